"""What the repository ships holds no machine-specific paths (results JSON written by a benchmark
on someone's machine is the usual way one gets in)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# an absolute path into a home or a work directory: the machine of whoever ran it (/tmp is everywhere)
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:home/\w+|root|work|Users/\w+)/[\w.-]+")


def shipped_text_files():
    for top in ("docs", "config", "launch"):
        yield from (p for p in (ROOT / top).rglob("*") if p.suffix in {".json", ".md", ".yaml", ".py", ".xml"})
    yield ROOT / "README.md"


def test_no_machine_specific_paths_in_docs_results_and_configs():
    found = []
    for path in shipped_text_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if match := MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not found, "machine-specific paths (write paths relative to the repository):\n" + "\n".join(found[:20])


def test_the_pattern_catches_what_it_is_for():
    assert MACHINE_PATH.search('"bags": "/work/main/runs/shipped/demos"')
    assert MACHINE_PATH.search("saved to /home/alice/ws/runs")
    assert not MACHINE_PATH.search("topic /camera/color/image_raw and ~/ws/venv")
