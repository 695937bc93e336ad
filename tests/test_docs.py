"""What a user reads (README.md and docs/): the user's path first, in the user's words.

The README's first screen holds what a new user needs (install, build the demo model, edit a photo, open the
app, run the tests, and that the demo model's edits are noise); no page speaks of the project's own workings
(issue numbers, the developers' `../shared` folder, the specification file only they have, machines "lent")."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
INTERNAL = {
    "an issue number": re.compile(r"\bissues? #?\d+", re.I),
    "the developers' ../shared folder": re.compile(r"\.\./shared"),
    "the specification file": re.compile(r"SPEC\.md"),
    "machines lent to sessions": re.compile(r"\blent\b|\bsessions?\b", re.I),
}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_speaks_of_the_projects_own_workings(page):
    found = [
        f"{page.name}:{n}: {what}: {line.strip()}"
        for n, line in enumerate(page.read_text().splitlines(), 1)
        for what, pattern in INTERNAL.items()
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_readmes_first_screen_is_the_users_path():
    first = "\n".join((REPO / "README.md").read_text().splitlines()[:60])
    for command in ('pip install -e ".[test]"', "dvc repro", "facepaint edit ", "facepaint app", "python -m pytest"):
        assert command in first, f"the README's first 60 lines lack `{command}`"
    assert re.search(r"demo model.{0,80}noise", first, re.I | re.S), "the first screen must say the demo edits noise"
    assert "stable-diffusion-inpainting" in first  # where the real weights come from


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"docs/{page.name} is not linked from the README"
