"""uv.lock read as data: the version of each locked package."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "uv.lock"


def locked_versions() -> dict[str, str]:
    """Canonical name -> version of every package in uv.lock (the project's own included)."""
    lock = tomllib.loads(LOCK.read_text())
    return {canonicalize_name(package["name"]): package["version"] for package in lock["package"]}
