"""The README stays true: every setting is documented, and every link leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anb.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]


def documented_settings() -> set[str]:
    """The `ANB_…` names in the first column of the README's configuration table."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(ANB_[A-Z0-9_]+)`", section, re.MULTILINE))


TEST_ONLY = {"ANB_REQUIRE_SERVICES", "ANB_TEST_REDIS_DB"}  # read by the tests, not the app


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    settings = {f"ANB_{name.upper()}" for name in Settings.model_fields} | TEST_ONLY
    assert settings - documented_settings() == set(), "settings missing from the README"
    assert documented_settings() - settings == set(), "the README documents unknown settings"


@pytest.mark.parametrize("document", DOCS, ids=lambda path: path.name)
def test_relative_links_lead_to_files_that_exist(document: Path) -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text())
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    missing = [link for link in local if not (document.parent / link).exists()]
    assert missing == []
