"""Build the Lambda deployment packages of template.yaml, the way `sam build` lays them out.

    scripts/build_lambda [--python-version 3.12] [OUT_DIR]        # OUT_DIR/function, OUT_DIR/layer
    scripts/build_lambda --only function|layer DIR                 # one part, into DIR (sam build)

scripts/build_lambda runs this module with the project's .venv (scripts/_venv.sh build).

- function/ (CodeUri of ApiFunction and WorkerFunction, which share it): the `anb` package and
  the versions of its dependencies that uv.lock holds, installed with `uv pip install --target`
  for Lambda (manylinux x86_64, CPython 3.12; the lock's markers evaluated for that platform,
  every wheel checked against the lock's hashes), plus handlers/; minus what the python3.12
  runtime already provides (boto3, botocore, s3transfer, jmespath, urllib3), what Lambda never
  runs (gunicorn, uvicorn, its uvloop and httptools, and their CLI dependencies), console
  scripts and the ffmpeg binary of imageio-ffmpeg, which moves to
- layer/ (FfmpegLayer): bin/ffmpeg, the static ffmpeg of the same imageio-ffmpeg wheel; Lambda
  mounts it at /opt/bin/ffmpeg (ANB_FFMPEG and IMAGEIO_FFMPEG_EXE point there).

The function package also gets certs/rds-ca.pem, AWS's RDS global CA bundle, downloaded at
each build from https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem: it is
/var/task/certs/rds-ca.pem on Lambda, the template's default DatabaseCaFile
(ANB_DATABASE_CA_FILE). RDS_CA_BUNDLE=<pem file> in the environment (of `sam build` too) ships
that file instead, for builds that cannot reach the URL.

Lambda's limit of 250 MB unzipped (262,144,000 bytes) counts a function with all its layers:
the sizes are printed, and the build fails when the function and its layer exceed it.
`sam build` calls this script through the Makefile (BuildMethod: makefile); the tests in
tests/deploy build with it too. Bytecode is not compiled: only a Python 3.12 could write it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from collections.abc import Iterable, Mapping
from importlib.metadata import Distribution, distributions
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
UV = REPO / "scripts" / "uv"
LIMIT_BYTES = 262_144_000  # Lambda: function + layers, unzipped
# Lambda python3.12 runs on Amazon Linux 2023 (glibc 2.34): wheels up to manylinux_2_34 run
# there (uv takes this platform to include the older manylinux ones). imageio-ffmpeg >= 0.8 is
# manylinux_2_28 only: manylinux2014 alone (as sam's own Python builder has it) has no wheel of
# the locked version.
PLATFORM = "x86_64-manylinux_2_34"
# Distributions the python3.12 runtime already has (/var/runtime: the AWS SDK and its own
# dependencies): 33 MB that a function with a 173 MB ffmpeg is better off without.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3"}
# Distributions only the EC2 and embedded modes run (anb serve, Gunicorn + Uvicorn).
NEVER_NEEDED = {
    "gunicorn", "uvicorn-worker", "uvicorn", "click", "h11", "uvloop", "httptools",
}  # fmt: skip
FFMPEG_PATTERN = "ffmpeg-linux-x86_64-*"
CA_BUNDLE_NAME = "rds-ca.pem"
# Every region's RDS certificate authorities, which AWS adds to as it rotates them.
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def main() -> int:
    args = _parse_args()
    if args.only:
        out = args.out_dir
        _require_empty(out)
        if args.only == "function":
            build_function(out, args.python_version)
        else:
            build_layer(out, args.python_version)
        sizes = {args.only: tree_size(out)}
    else:
        out = args.out_dir
        function, layer = out / "function", out / "layer"
        for part in (function, layer):
            if part.exists():
                shutil.rmtree(part)
        build_function(function, args.python_version, layer=layer)
        sizes = {"function": tree_size(function), "layer": tree_size(layer)}
    return _report(sizes, out)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out_dir", nargs="?", type=Path, default=REPO / "build" / "lambda",
        help="where to build (default: build/lambda); with --only, the part's own directory",
    )  # fmt: skip
    parser.add_argument("--only", choices=("function", "layer"), help="build one part only")
    parser.add_argument(
        "--python-version", default="3.12",
        help="CPython version to install wheels for and to evaluate the lock's markers with"
        " (default 3.12, the Lambda runtime)",
    )  # fmt: skip
    args = parser.parse_args()
    args.out_dir = args.out_dir.resolve()
    return args


def build_function(target: Path, python_version: str, *, layer: Path | None = None) -> None:
    """The function package; with `layer`, the ffmpeg binary moves there (one install)."""
    environment = lambda_environment(python_version)
    requirements = locked_requirements(environment)
    with tempfile.TemporaryDirectory(prefix="anb-lambda-") as tmp:
        source = _stage_project(Path(tmp) / "project")
        _install_locked(target, python_version, requirements)
        _install_project(target, python_version, source)
    _drop_distributions(target, RUNTIME_PROVIDED | NEVER_NEEDED, environment)
    binary = _ffmpeg_binary(target)
    if layer is not None:
        _place_ffmpeg(binary, layer)
    else:
        binary.unlink()
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts for the build host
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache)
    handlers = target / "handlers"
    handlers.mkdir()
    for module in sorted((REPO / "handlers").glob("*.py")):
        shutil.copy2(module, handlers / module.name)
    add_ca_bundle(target)


def add_ca_bundle(target: Path) -> Path:
    """Ship the RDS CA bundle as certs/rds-ca.pem: /var/task/certs/rds-ca.pem on Lambda, the
    template's DatabaseCaFile. It is downloaded, unless RDS_CA_BUNDLE=<file> names a copy."""
    bundle = os.environ.get("RDS_CA_BUNDLE")
    if bundle:
        source = f"RDS_CA_BUNDLE={bundle}"
        try:
            text = Path(bundle).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"build_lambda: cannot read {source}: {exc}") from None
    else:
        source = RDS_CA_BUNDLE_URL
        text = _download_ca_bundle()
    authorities = _certificate_authorities(text, source)
    (target / "certs").mkdir(exist_ok=True)
    shipped = target / "certs" / CA_BUNDLE_NAME
    shipped.write_text(text)
    print(f"build_lambda: certs/{CA_BUNDLE_NAME} from {source}, CAs: {authorities}", flush=True)
    return shipped


def _download_ca_bundle() -> str:
    try:
        with urllib.request.urlopen(RDS_CA_BUNDLE_URL, timeout=30) as response:
            return response.read().decode("ascii")
    except (OSError, UnicodeDecodeError) as exc:  # URLError and HTTPError are OSErrors
        raise SystemExit(
            f"build_lambda: cannot download the RDS CA bundle from {RDS_CA_BUNDLE_URL}: {exc}."
            " Fetch it some other way and build with RDS_CA_BUNDLE=<that file>."
        ) from None


def _certificate_authorities(text: str, source: str) -> int:
    """How many CA certificates `text` holds, loaded as the app will load it
    (ssl.create_default_context(cafile=...)): a bundle it cannot load fails the build, not
    every database connection on Lambda."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError):
        raise SystemExit(f"build_lambda: {source} holds no PEM certificate") from None
    authorities = context.cert_store_stats()["x509_ca"]
    if not authorities:
        raise SystemExit(f"build_lambda: {source} holds no CA certificate")
    return authorities


def build_layer(target: Path, python_version: str) -> None:
    """The ffmpeg layer alone, from the imageio-ffmpeg wheel that uv.lock holds."""
    requirements = locked_requirements(lambda_environment(python_version))
    with tempfile.TemporaryDirectory(prefix="anb-layer-") as tmp:
        wheel_dir = Path(tmp) / "wheel"
        ffmpeg = [line for line in requirements if line.startswith("imageio-ffmpeg==")]
        _install_locked(wheel_dir, python_version, ffmpeg)
        _place_ffmpeg(_ffmpeg_binary(wheel_dir), target)


def _stage_project(stage: Path) -> Path:
    """A clean copy of what builds the wheel, so no stale build/ or egg-info leaks in and the
    work tree stays untouched."""
    stage.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, stage / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", stage / "src", ignore=ignore)
    return stage


def lambda_environment(python_version: str) -> dict[str, str]:
    """The values of environment markers (PEP 508) on Lambda: CPython `python_version` on
    Linux x86_64. A marker on the full version sees the version's first release (X.Y.0), so a
    backport for early patch releases is installed rather than missed."""
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{python_version}.0",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python_version}.0",
        "python_version": python_version,
        "sys_platform": "linux",
    }


def locked_requirements(environment: Mapping[str, str]) -> list[str]:
    """The runtime dependencies of uv.lock that `environment` installs, as pinned requirements
    with the sha256 of each of their wheels (uv exports the lock as pylock.toml, PEP 751)."""
    exported = subprocess.run(
        [str(UV), "export", "--locked", "--no-dev", "--no-emit-project", "--quiet",
         "--format", "pylock.toml"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return requirements_for(tomllib.loads(exported), environment)


def requirements_for(lock: Mapping[str, object], environment: Mapping[str, str]) -> list[str]:
    """`name==version --hash=sha256:…` for each package of a pylock.toml document whose
    marker holds in `environment` (its wheels only: the build installs no sdist)."""
    packages = lock.get("packages", [])
    assert isinstance(packages, list)
    lines = []
    for package in packages:
        marker = package.get("marker")
        if marker and not Marker(marker).evaluate({**environment, "extra": ""}):
            continue
        hashes = sorted(wheel["hashes"]["sha256"] for wheel in package.get("wheels", []))
        pins = " ".join(f"--hash=sha256:{digest}" for digest in hashes)
        lines.append(f"{canonicalize_name(package['name'])}=={package['version']} {pins}")
    return lines


def _install_locked(target: Path, python_version: str, requirements: Iterable[str]) -> None:
    """Exactly these pinned, hashed requirements (no resolution: --no-deps), wheels only."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="anb-locked-") as listed:
        listed.write("\n".join(requirements) + "\n")
        listed.flush()
        _uv_pip_install(
            target, python_version, "--only-binary", ":all:", "--require-hashes", "-r", listed.name
        )


def _install_project(target: Path, python_version: str, source: Path) -> None:
    """The `anb` package itself, built from `source` (its dependencies are installed)."""
    _uv_pip_install(target, python_version, str(source))


def _uv_pip_install(target: Path, python_version: str, *arguments: str) -> None:
    command = [
        str(UV), "pip", "install", "--quiet", "--no-deps", "--target", str(target),
        "--python", sys.executable, "--python-platform", PLATFORM,
        "--python-version", python_version, *arguments,
    ]  # fmt: skip
    shown = " ".join(["uv", *command[1:]]).replace(sys.executable, "python3")
    print(f"build_lambda: {shown}", flush=True)
    subprocess.run(command, check=True)


def _distributions(target: Path) -> dict[str, Distribution]:
    """The distributions installed in `target`, by canonical name."""
    return {
        canonicalize_name(dist.metadata["Name"]): dist for dist in distributions(path=[str(target)])
    }


def _drop_distributions(target: Path, names: set[str], environment: Mapping[str, str]) -> None:
    """Delete the files of these distributions (by their RECORD); refuse when a distribution
    that stays needs one that Lambda will not have (anb lists them for its other modes)."""
    installed = _distributions(target)
    dropped = {name for name in names if name in installed}
    missing_on_lambda = dropped - RUNTIME_PROVIDED
    for name, dist in installed.items():
        if name in dropped or name == "anb":
            continue
        for needed in required_on(dist, environment):
            if needed in missing_on_lambda:
                raise SystemExit(f"build_lambda: {name} requires {needed}, which is dropped")
    for name in sorted(dropped):
        files = [
            Path(installed[name].locate_file(file)).resolve()
            for file in installed[name].files or ()
        ]
        for path in files:
            if path.is_relative_to(target) and path.is_file():
                path.unlink()
        for path in files:  # what the RECORD does not list (e.g. INSTALLER)
            if path.name == "METADATA" and path.parent.name.endswith(".dist-info"):
                shutil.rmtree(path.parent, ignore_errors=True)
    for directory in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def required_on(dist: Distribution, environment: Mapping[str, str]) -> set[str]:
    """The canonical names of what `dist` requires in `environment`, with none of its extras
    (a requirement whose marker does not hold there, e.g. Windows-only, is not required)."""
    needed = set()
    for spec in dist.requires or ():
        requirement = Requirement(spec)
        marker = requirement.marker
        if marker is None or marker.evaluate({**environment, "extra": ""}):
            needed.add(canonicalize_name(requirement.name))
    return needed


def _ffmpeg_binary(site: Path) -> Path:
    found = sorted((site / "imageio_ffmpeg" / "binaries").glob(FFMPEG_PATTERN))
    if len(found) != 1:
        raise SystemExit(f"build_lambda: expected one ffmpeg binary in imageio_ffmpeg: {found}")
    return found[0]


def _place_ffmpeg(binary: Path, layer: Path) -> None:
    (layer / "bin").mkdir(parents=True, exist_ok=True)
    target = layer / "bin" / "ffmpeg"
    shutil.move(binary, target)
    target.chmod(0o755)


def _require_empty(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise SystemExit(f"build_lambda: {directory} is not empty")
    directory.mkdir(parents=True, exist_ok=True)


def tree_size(root: Path) -> int:
    """Unzipped size as Lambda counts it: the bytes of every file."""
    return sum(path.lstat().st_size for path in root.rglob("*") if path.is_file())


def _report(sizes: dict[str, int], out: Path) -> int:
    for part, size in sizes.items():
        where = out / part if len(sizes) > 1 else out
        print(f"{part:<18} {size / 1e6:8.1f} MB  {size:>12,} bytes  ({where})")
    if len(sizes) == 1:
        return 0
    total = sum(sizes.values())
    share = 100 * total / LIMIT_BYTES
    print(f"{'function + layer':<18} {total / 1e6:8.1f} MB  {total:>12,} bytes  "
          f"({share:.0f}% of Lambda's {LIMIT_BYTES:,})")  # fmt: skip
    if total >= LIMIT_BYTES:
        print("build_lambda: over Lambda's unzipped limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
