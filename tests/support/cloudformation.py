"""A CloudFormation template read as plain data, and the ways the tests walk it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.services import missing_tool

Template = dict[str, Any]


def load_template(path: Path) -> Template:
    try:
        from cfnlint.decode import cfn_yaml
    except ImportError:
        missing_tool("cfn-lint")
    # a JSON round trip turns cfn-lint's node classes into plain dicts, lists and strings
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def resources(t: Template, kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in t["Resources"].items()
        if kind is None or resource["Type"] == kind
    }


def props(t: Template, name: str) -> dict[str, Any]:
    return t["Resources"][name].get("Properties", {})


def target(value: Any) -> str | None:
    """The logical id a `Ref` or `Fn::GetAtt` points to, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            attribute = value["Fn::GetAtt"]
            return attribute[0] if isinstance(attribute, list) else attribute.split(".")[0]
    return None


def sub_text(value: Any) -> str:
    """The text of an `Fn::Sub` (string or [string, variables])."""
    assert isinstance(value, dict) and "Fn::Sub" in value, f"expected !Sub, got {value!r}"
    text = value["Fn::Sub"]
    return text[0] if isinstance(text, list) else text


def render_sub(text: str) -> str:
    """An `Fn::Sub` text with every ${...} replaced by a plausible value."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        fakes = {
            "AWS::StackName": "anb-prod",
            "AWS::Region": "us-east-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
        }
        return fakes.get(name, "fake-" + re.sub(r"[^A-Za-z0-9]", "-", name).lower())

    return re.sub(r"\$\{([^}]+)\}", value, text)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
