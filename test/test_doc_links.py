"""Every relative link in the README and docs/ reaches a file of the repository, and every
``#anchor`` a heading of its target (as GitHub names them): results, JSON and plots are found
from the README through these links, so a moved file or a renamed heading must fail here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]*)\)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # no headings inside code blocks
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]  # http:, https:, mailto:


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_a_heading(doc):
    broken = []
    for target in relative_links(doc):
        if not target:
            broken.append("[...](): an empty link")
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists() or ROOT not in (resolved, *resolved.parents):
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_check_catches_what_it_is_for(tmp_path):
    assert github_anchor("Routing overhead: does a skipped layer's time disappear? (CPU)") == \
        "routing-overhead-does-a-skipped-layers-time-disappear-cpu"
    assert github_anchor("The router taught by measured layer credit (`router.credit: measured`)") == \
        "the-router-taught-by-measured-layer-credit-routercredit-measured"
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n[ok](#title) [gone](#nowhere) [web](https://example.org) [empty]()\n"
                   "```\n# not a heading\n```\n")
    assert relative_links(doc) == ["#title", "#nowhere", ""]
    assert anchors(doc) == {"title"}
