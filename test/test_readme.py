"""The README documents every configuration key the code accepts (tables come from
scripts/config_tables.py) and starts with the two fresh-machine commands."""

from pathlib import Path

from actdistill_ros.control.node_config import PARAMS
from actdistill_ros.distill_job.config import field_docs

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_first_lines_are_the_demo_and_test_commands():
    head = "\n".join(README.splitlines()[:6])
    assert "make demo" in head and "make test" in head


def test_every_policy_parameter_and_distill_key_is_documented():
    missing = [s.name for s in PARAMS if f"`{s.name}`" not in README]
    missing += [name for name, *_ in field_docs() if f"`{name}`" not in README]
    assert not missing, f"README lacks {missing}: rerun scripts/config_tables.py"
