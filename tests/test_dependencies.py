"""The dependencies: uv.lock matches pyproject.toml, imageio-ffmpeg (whose ffmpeg the probe and
the pipeline read) is pinned, what serving installs holds no test tool, and the Lambda build
takes from the lock what Lambda's platform needs, no more, no less."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from tests.deploy.test_ec2_boot import shellcheck
from tests.support.lock import locked_versions

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / "scripts" / "uv"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TEST_TOOLS = {"pytest", "moto", "ruff", "mypy", "schemathesis", "cfn-lint", "hypothesis"}


def uv(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UV), *arguments], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def exported_names(*options: str) -> set[str]:
    """The packages that `uv export` takes from the lock, with these options."""
    result = uv("export", "--locked", "--no-emit-project", "--format", "pylock.toml", *options)
    assert result.returncode == 0, result.stderr
    return {package["name"] for package in tomllib.loads(result.stdout)["packages"]}


def test_uv_lock_matches_pyproject() -> None:
    result = uv("lock", "--check", "--offline")
    assert result.returncode == 0, f"run scripts/uv lock and commit uv.lock:\n{result.stderr}"


def test_imageio_ffmpeg_is_pinned_exactly() -> None:
    (pinned,) = [
        Requirement(spec)
        for spec in PROJECT["dependencies"]
        if Requirement(spec).name == "imageio-ffmpeg"
    ]
    (specifier,) = pinned.specifier
    assert specifier.operator == "=="
    assert locked_versions()["imageio-ffmpeg"] == specifier.version
    assert importlib.metadata.version("imageio-ffmpeg") == specifier.version  # this .venv


def test_serving_installs_no_test_tool() -> None:
    runtime = exported_names("--no-dev")
    with_tests = exported_names("--no-dev", "--extra", "test")
    assert with_tests >= TEST_TOOLS
    assert runtime & TEST_TOOLS == set()
    assert {"fastapi", "uvicorn", "imageio-ffmpeg", "gunicorn"} <= runtime
    assert "locust" not in runtime and "matplotlib" not in runtime  # the load extra


def test_the_lambda_build_needs_only_packaging_beside_the_runtime() -> None:
    assert exported_names("--only-group", "build") == {"packaging"}


def test_venv_refuses_an_unknown_extra() -> None:
    """scripts/_venv.sh is sourced: a caller's own arguments must not pass for extras."""
    result = subprocess.run(
        ["bash", "-c", 'source scripts/_venv.sh "$@"', "bash", "--port"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "expected runtime, test, load or build, not '--port'" in result.stderr


@pytest.mark.parametrize("name", ["uv", "_venv.sh", "run", "test", "build_lambda"])
def test_install_scripts_are_shellcheck_clean(name: str) -> None:
    assert shellcheck(ROOT / "scripts" / name) == []


# --- what the Lambda build takes from the lock ---------------------------------------------


@pytest.fixture(scope="module")
def build_lambda() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_lambda", ROOT / "scripts/build_lambda.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def package(name: str, version: str, marker: str | None = None) -> dict[str, object]:
    """A [[packages]] entry of pylock.toml, with a wheel and an sdist."""
    entry: dict[str, object] = {
        "name": name,
        "version": version,
        "wheels": [
            {"url": f"https://example.invalid/{name}-b.whl", "hashes": {"sha256": "bb"}},
            {"url": f"https://example.invalid/{name}-a.whl", "hashes": {"sha256": "aa"}},
        ],
        "sdist": {"url": f"https://example.invalid/{name}.tar.gz", "hashes": {"sha256": "ff"}},
    }
    if marker:
        entry["marker"] = marker
    return entry


LOCK = {
    "lock-version": "1.0",
    "packages": [
        package("FastAPI", "1.0"),
        package("pywin32", "312", "sys_platform == 'win32'"),
        package("uvloop", "0.23", "sys_platform != 'win32'"),
        package("async-timeout", "5.0.1", "python_full_version < '3.11.3'"),
        package("tomli", "2.0", "python_version < '3.12'"),
        package("appnope", "0.1", "platform_system == 'Darwin'"),
        package("greenlet", "3.2", "platform_machine == 'x86_64' or platform_machine == 'aarch64'"),
        package("pypy-only", "1.0", "implementation_name == 'pypy'"),
    ],
}


def test_the_lambda_build_takes_the_locked_packages_whose_markers_hold_there(
    build_lambda: ModuleType,
) -> None:
    on_312 = build_lambda.requirements_for(LOCK, build_lambda.lambda_environment("3.12"))
    assert on_312 == [
        "fastapi==1.0 --hash=sha256:aa --hash=sha256:bb",  # every wheel's hash, no sdist's
        "uvloop==0.23 --hash=sha256:aa --hash=sha256:bb",
        "greenlet==3.2 --hash=sha256:aa --hash=sha256:bb",
    ]
    on_311 = build_lambda.requirements_for(LOCK, build_lambda.lambda_environment("3.11"))
    names = [line.split("==")[0] for line in on_311]
    assert names == ["fastapi", "uvloop", "async-timeout", "tomli", "greenlet"]


def write_dist_info(site: Path, name: str, requires: list[str]) -> None:
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    lines += [f"Requires-Dist: {spec}" for spec in requires]
    (dist_info / "METADATA").write_text("\n".join(lines) + "\n")
    (dist_info / "RECORD").write_text(f"{name}-1.0.dist-info/METADATA,,\n")


def test_what_a_distribution_requires_on_lambda(build_lambda: ModuleType, tmp_path: Path) -> None:
    requires = [
        "Uvicorn[standard]>=0.30",
        "pywin32>=300; sys_platform == 'win32'",
        "uvloop; sys_platform != 'win32' and platform_python_implementation == 'CPython'",
        "tomli; python_version < '3.11'",
        "redis; extra == 'cache'",
        "colorama (>=0.4); platform_system == 'Windows'",
    ]
    write_dist_info(tmp_path, "Keeper_Package", requires)
    installed = build_lambda._distributions(tmp_path)
    assert list(installed) == ["keeper-package"]
    needed = build_lambda.required_on(
        installed["keeper-package"], build_lambda.lambda_environment("3.12")
    )
    assert needed == {"uvicorn", "uvloop"}


def test_the_lambda_build_drops_a_distribution_only_windows_needs(
    build_lambda: ModuleType, tmp_path: Path
) -> None:
    write_dist_info(tmp_path, "uvicorn", [])
    write_dist_info(tmp_path, "keeper", ["uvicorn; sys_platform == 'win32'"])
    build_lambda._drop_distributions(tmp_path, {"uvicorn"}, build_lambda.lambda_environment("3.12"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keeper-1.0.dist-info"]
