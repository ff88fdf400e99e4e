"""Both deployment templates pass checkov (scripts/checkov, run by CI) only through the skips
they carry themselves: each must name a check and say why the finding is accepted."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import loads

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = [ROOT / "ec2" / "anb.yaml", ROOT / "template.yaml"]


def skips(template: Path) -> list[tuple[str, dict[str, Any]]]:
    document = json.loads(json.dumps(loads(template.read_text())))
    return [
        (name, skip)
        for name, resource in document["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_every_checkov_skip_names_a_check_and_its_reason(template: Path) -> None:
    found = skips(template)
    for name, skip in found:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip.get("id", "")), f"{name}: {skip}"
        assert len(skip.get("comment", "").split()) >= 4, f"{name} skips {skip['id']} unexplained"
    ids = [(name, skip["id"]) for name, skip in found]
    assert len(ids) == len(set(ids)), "a check skipped twice on one resource"


def test_ci_runs_checkov_on_both_templates() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^scripts/checkov$", ci, re.M)
    script = (ROOT / "scripts" / "checkov").read_text()
    for template in TEMPLATES:
        assert f"-f {template.relative_to(ROOT)}" in script
