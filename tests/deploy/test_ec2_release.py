"""ec2/bin/anb-publish builds a release, from the versions of uv.lock, that an instance installs
with no package index: the boot's own install step (ec2/user-data/lib.sh `install_app`) runs
here against it, with pip's configuration and any index out of reach, and the installed `anb`
must start.

Building needs PyPI (pip download), like the Lambda build; the install must not.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from tests.support.lock import locked_versions

ROOT = Path(__file__).resolve().parents[2]
PUBLISH = ROOT / "ec2" / "bin" / "anb-publish"
LIB = ROOT / "ec2" / "user-data" / "lib.sh"


@functools.cache
def python311() -> str:
    """A Python 3.11 with pip, as the release is built and installed with: this interpreter's
    own base if this is 3.11 (the .venv that uv makes has no pip), else python3.11 on PATH."""
    candidates = [shutil.which("python3.11")]
    if sys.version_info[:2] == (3, 11):
        candidates.insert(0, str(Path(sys.base_prefix) / "bin" / "python3.11"))
    for candidate in candidates:
        if candidate and _has_pip(candidate):
            return candidate
    pytest.skip("the release is built and installed with Python 3.11 and pip, not here")


def _has_pip(python: str) -> bool:
    check = [python, "-m", "pip", "--version"]
    return subprocess.run(check, capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release")
    result = subprocess.run(
        [str(PUBLISH), "--local", str(out)],
        env={**os.environ, "PYTHON": python311()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def al2023_tags() -> set[Tag]:
    """What pip on Amazon Linux 2023 (CPython 3.11, x86_64, glibc 2.34) installs."""
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(34, 16, -1)]
    platforms += ["manylinux2014_x86_64", "linux_x86_64"]
    tags = set(cpython_tags((3, 11), platforms=platforms))
    return tags | set(compatible_tags((3, 11), "cp311", platforms))


def test_the_release_holds_the_package_its_wheels_and_the_boot_scripts(release: Path) -> None:
    assert [p.name for p in release.glob("anb-*.whl")] == ["anb-0.1.0-py3-none-any.whl"]
    assert not (release / "constraints.txt").exists()
    with tarfile.open(release / "ec2.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"ec2/user-data/api.sh", "ec2/user-data/lib.sh", "ec2/bin/anb-lifecycle"} <= names

    wheels = sorted((release / "wheels").iterdir())
    assert wheels and all(w.suffix == ".whl" for w in wheels), "wheels only, no sdists to build"
    supported = al2023_tags()
    for wheel in wheels:
        _, _, _, tags = parse_wheel_filename(wheel.name)
        assert tags & supported, f"{wheel.name} does not install on the instances"
    names = {parse_wheel_filename(w.name)[0] for w in wheels}
    assert {"fastapi", "gunicorn", "uvicorn-worker", "pg8000", "imageio-ffmpeg"} <= names
    assert "pytest" not in names and "moto" not in names, "test tools stay out of a release"


def test_the_release_s_wheels_are_the_locked_versions(release: Path) -> None:
    locked = locked_versions()
    for wheel in sorted((release / "wheels").iterdir()):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        assert str(version) == locked[name], f"{wheel.name}: uv.lock has {locked[name]}"


def test_the_publisher_refuses_another_python(tmp_path: Path) -> None:
    other = tmp_path / "python3"
    other.write_text("#!/bin/sh\nexit 1\n")  # answers "no" to "are you 3.11?"
    other.chmod(0o755)
    result = subprocess.run(
        [str(PUBLISH), "--local", str(tmp_path / "out")],
        env={**os.environ, "PYTHON": str(other)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "is not Python 3.11" in result.stderr


def test_an_instance_installs_the_release_without_a_package_index(
    release: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    python_dir = str(Path(python311()).parent)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python3.11").symlink_to(python311())  # the boot calls python3.11 by name
    env = {
        "PATH": f"{shim}:{python_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,  # no mirror, no extra index from this machine
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # any index lookup would fail
        "ANB_RELEASE_DIR": str(release),
        "ANB_VENV": str(venv),
    }
    script = f"set -Eeuo pipefail\nsource {shlex.quote(str(LIB))}\ninstall_app"
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import anb.api, gunicorn, pg8000; print('ok')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.stdout.strip() == "ok", version.stderr
