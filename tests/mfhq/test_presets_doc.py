"""docs/presets.md is rendered from the config's own fields: a changed option needs a regenerated doc."""
from __future__ import annotations

from pathlib import Path

from mfhq.presets_doc import COMMAND, render

REPO = Path(__file__).resolve().parents[2]


def test_committed_presets_doc_is_what_the_generator_writes():
    committed = (REPO / "docs" / "presets.md").read_text()
    assert committed == render(), f"docs/presets.md is out of date: run `{COMMAND}` from the repository root"


def test_every_option_is_documented():
    import dataclasses

    from mfhq.config import PipelineConfig

    for section in dataclasses.fields(PipelineConfig):
        if section.name == "name":
            continue
        for option in dataclasses.fields(type(getattr(PipelineConfig(), section.name))):
            assert option.metadata.get("doc"), f"{section.name}.{option.name} has no doc in its field's metadata"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    import re

    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_between_readme_and_docs_resolve():
    import re

    pages = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists() or (anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text())):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "broken links: " + ", ".join(broken)
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)", (REPO / "README.md").read_text()))
    assert linked == {p.name for p in (REPO / "docs").glob("*.md")}, "every docs/ page is linked from the README"
