"""README.md is a front page read in a user's first-day order, and what it links to exists."""

from __future__ import annotations

import re

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_short_and_in_first_day_order():
    assert len(README.splitlines()) <= 200
    headings = re.findall(r"^## (.+)$", README, re.M)
    first_day = ["Quick start (offline, CPU)", "Your own data", "Experiments", "Review", "On a GPU box"]
    assert [h for h in headings if h in first_day] == first_day
    assert "Reading the scores" in headings  # the demo block links to it


def test_readme_links_point_at_files_and_headings_that_exist():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target
    for folder, anchor in re.findall(r"\]\(([^)#:]*)#([^)]+)\)", README):
        page = (ROOT / folder).read_text(encoding="utf-8") if folder else README
        headings = re.findall(r"^#+ (.+)$", page, re.M)
        slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
        assert anchor in slugs, (folder, anchor)
