"""The Lambda entry points, called as Lambda calls them, with the sample events in events/;
and the deployment packages that scripts/build_lambda makes: under Lambda's size limit, and
importable and working with nothing but what Lambda puts on the path."""

from __future__ import annotations

import copy
import datetime
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from packaging.utils import canonicalize_name

from anb.core.migrations import upgrade_to_head
from tests.support.lock import locked_versions
from tests.support.services import reset_process_state

ROOT = Path(__file__).parents[2]
EVENTS = ROOT / "events"
BUILD_SCRIPT = ROOT / "scripts" / "build_lambda"  # runs build_lambda.py with the .venv
BUILD_MODULE = ROOT / "scripts" / "build_lambda.py"
LIMIT_BYTES = 262_144_000  # Lambda: a function with all its layers, unzipped
# What the python3.12 runtime has in /var/runtime, and the build leaves out.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3")


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@dataclass
class FakeContext:
    """The attributes of a Lambda context object that libraries read."""

    function_name: str = "anb-dev-api"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:anb-dev-api"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "8f5c3c4e-1d2b-4a5f-9e8d-7c6b5a4f3e2d"
    log_group_name: str = "/aws/lambda/anb-dev-api"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Settings as on Lambda, with a migrated SQLite database in place of PostgreSQL."""
    for name in list(os.environ):
        if name.startswith("ANB_"):
            monkeypatch.delenv(name)
    data = tmp_path / "anb"
    monkeypatch.setenv("ANB_DATA_DIR", str(data))
    monkeypatch.setenv("ANB_DATABASE_URL", f"sqlite:///{tmp_path / 'anb.db'}")
    monkeypatch.setenv("ANB_JWT_SECRET", "lambda-test-secret-" + "x" * 32)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ANB")
    reset_process_state()
    upgrade_to_head()
    yield data
    reset_process_state()


def load_handler(module: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """handlers.<module>.handler, imported afresh: the API's module builds the app at import,
    as a cold start does."""
    name = f"handlers.{module}"
    loaded = sys.modules.get(name)
    loaded = importlib.reload(loaded) if loaded else importlib.import_module(name)
    return loaded.handler


@pytest.mark.parametrize("event_file", ["apigw_v2.json", "alb.json"], ids=["http-api-v2", "alb"])
def test_the_api_handler_answers_health(lambda_env: Path, event_file: str) -> None:
    response = load_handler("api")(event(event_file), FakeContext())
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {"status": "healthy"}
    assert response["isBase64Encoded"] is False
    headers = response.get("headers") or {
        name: values[-1] for name, values in response["multiValueHeaders"].items()
    }
    assert headers["content-type"] == "application/json"


def test_the_api_handler_routes_by_path(lambda_env: Path) -> None:
    """The answer comes from the app's routing, not from a canned health check."""
    request = event("apigw_v2.json")
    request["rawPath"] = request["requestContext"]["http"]["path"] = "/api/nowhere"
    response = load_handler("api")(request, FakeContext())
    assert response["statusCode"] == 404
    assert "detail" in json.loads(response["body"])


def test_the_worker_handler_takes_the_sample_sqs_event(lambda_env: Path) -> None:
    """The sample job names a video that does not exist: it succeeds doing nothing."""
    assert load_handler("worker")(event("sqs.json"), FakeContext()) == {"batchItemFailures": []}


def test_the_worker_handler_reports_a_poison_record_only(lambda_env: Path) -> None:
    sample = event("sqs.json")
    poison = copy.deepcopy(sample["Records"][0])
    poison["messageId"] = "poison-1"
    poison["body"] = "this is not a job"
    batch = {"Records": [poison, sample["Records"][0]]}
    response = load_handler("worker")(batch, FakeContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}


# --- the deployment packages -------------------------------------------------------------


def build_script() -> ModuleType:
    """scripts/build_lambda.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("build_lambda", BUILD_MODULE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_refuses_to_exceed_the_lambda_limit(capsys: pytest.CaptureFixture) -> None:
    script = build_script()
    assert script.LIMIT_BYTES == LIMIT_BYTES
    out = Path("/nonexistent")
    assert script._report({"function": 40_000_000, "layer": 172_000_000}, out) == 0
    assert script._report({"function": 90_000_000, "layer": LIMIT_BYTES - 90_000_000}, out) == 1
    assert "over Lambda's unzipped limit" in capsys.readouterr().err


def test_the_build_refuses_to_drop_what_a_kept_package_needs(tmp_path: Path) -> None:
    script = build_script()
    for name, requires in (("uvicorn", []), ("keeper", ["uvicorn>=0.30", "redis; extra == 'x'"])):
        dist_info = tmp_path / f"{name}-1.0.dist-info"
        dist_info.mkdir()
        lines = [f"Name: {name}", *(f"Requires-Dist: {r}" for r in requires)]
        (dist_info / "METADATA").write_text("\n".join(lines) + "\n")
        (dist_info / "RECORD").write_text(f"{name}-1.0.dist-info/METADATA,,\n")
    with pytest.raises(SystemExit, match="keeper requires uvicorn"):
        script._drop_distributions(tmp_path, {"uvicorn"}, script.lambda_environment("3.12"))


def write_ca_bundle(path: Path) -> Path:
    """A PEM bundle of one self-signed CA, standing in for AWS's RDS global bundle, so that
    the builds need not download it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anb test RDS CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ca_bundle(tmp_path_factory.mktemp("rds-ca") / "global-bundle.pem")


def test_the_build_ships_the_rds_ca_bundle_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca_bundle: Path
) -> None:
    script = build_script()
    monkeypatch.setenv("RDS_CA_BUNDLE", str(ca_bundle))
    shipped = script.add_ca_bundle(tmp_path)
    assert shipped == tmp_path / "certs" / "rds-ca.pem"  # /var/task/certs/rds-ca.pem
    assert shipped.read_bytes() == ca_bundle.read_bytes()
    ssl.create_default_context(cafile=str(shipped))  # what anb.core.db does with it
    bundle = tmp_path / "not-a-bundle.pem"
    for text in (
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    ):
        bundle.write_text(text)
        monkeypatch.setenv("RDS_CA_BUNDLE", str(bundle))
        with pytest.raises(SystemExit, match="no PEM certificate"):
            script.add_ca_bundle(tmp_path)
    monkeypatch.setenv("RDS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(SystemExit, match="cannot read RDS_CA_BUNDLE="):
        script.add_ca_bundle(tmp_path)


def test_the_build_downloads_the_rds_ca_bundle_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca_bundle: Path
) -> None:
    """Without RDS_CA_BUNDLE the package still gets a bundle (the template's DatabaseCaFile
    points at it): AWS's global one, fetched from its trust store (not here: offline)."""
    script = build_script()
    monkeypatch.delenv("RDS_CA_BUNDLE", raising=False)
    asked = []

    def answer(url: str, timeout: float) -> io.BytesIO:
        asked.append(url)
        return io.BytesIO(ca_bundle.read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", answer)
    shipped = script.add_ca_bundle(tmp_path)
    assert asked == ["https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"]
    assert shipped.read_bytes() == ca_bundle.read_bytes()

    def unreachable(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(SystemExit, match=r"cannot download the RDS CA bundle .* RDS_CA_BUNDLE="):
        script.add_ca_bundle(tmp_path)


def _run_build(out: Path, ca_bundle: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BUILD_SCRIPT), *options, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RDS_CA_BUNDLE": str(ca_bundle)},  # no download in the tests
    )


def _finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return output


@dataclass
class Builds:
    function: Path  # for Lambda: CPython 3.12
    layer: Path
    importable: Path  # the same package built for this interpreter, to import it here
    output: str


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, ca_bundle: Path) -> Builds:
    """scripts/build_lambda, as for Lambda; and, unless this is Python 3.12, the function
    package again for this interpreter (its compiled wheels differ), built at the same time."""
    out = tmp_path_factory.mktemp("lambda")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    for_lambda = _run_build(out, ca_bundle)
    for_here = None
    if here != "3.12":
        options = ("--only", "function", "--python-version", here)
        for_here = _run_build(out / "here", ca_bundle, *options)
    output = _finish(for_lambda)
    importable = out / "function"
    if for_here is not None:
        _finish(for_here)
        importable = out / "here"
    return Builds(out / "function", out / "layer", importable, output)


def size(root: Path) -> int:
    return sum(path.lstat().st_size for path in root.rglob("*") if path.is_file())


def test_each_function_with_its_layer_fits_lambda_s_limit(builds: Builds) -> None:
    function, layer = size(builds.function), size(builds.layer)
    assert function + layer < LIMIT_BYTES, builds.output
    assert layer > 50_000_000  # the layer does hold ffmpeg
    assert f"{function + layer:,} bytes" in builds.output  # the script prints what we measure


def test_the_function_package_is_for_lambda_python312(builds: Builds) -> None:
    package = builds.function
    assert list(package.glob("pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so"))
    for module in ("api.py", "worker.py"):
        assert (package / "handlers" / module).read_text() == (
            ROOT / "handlers" / module
        ).read_text()
    assert (package / "anb" / "processing" / "assets").is_dir()
    present = {path.name for path in package.iterdir()}
    assert not present & {*RUNTIME_PACKAGES, "gunicorn", "uvicorn", "bin"}
    assert not list(package.rglob("__pycache__"))
    assert not list(package.glob("imageio_ffmpeg/binaries/ffmpeg-*"))  # it is in the layer


def test_the_function_package_holds_the_locked_versions(builds: Builds) -> None:
    locked = locked_versions()
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions(path=[str(builds.function)])
    }
    assert {"fastapi", "imageio-ffmpeg", "pg8000", "anb"} <= installed.keys()
    assert {name: locked[name] for name in installed} == installed


def test_the_function_package_ships_the_rds_ca_bundle(builds: Builds, ca_bundle: Path) -> None:
    """The template's default DatabaseCaFile, /var/task/certs/rds-ca.pem, is in the package."""
    shipped = builds.function / "certs" / "rds-ca.pem"
    assert shipped.read_bytes() == ca_bundle.read_bytes()
    ssl.create_default_context(cafile=str(shipped))  # what anb.core.db does with it
    assert f"certs/rds-ca.pem from RDS_CA_BUNDLE={ca_bundle}, CAs: 1" in builds.output


def test_the_layer_s_ffmpeg_runs(builds: Builds) -> None:
    ffmpeg = builds.layer / "bin" / "ffmpeg"  # /opt/bin/ffmpeg on Lambda
    assert [path.name for path in builds.layer.rglob("*") if path.is_file()] == ["ffmpeg"]
    assert os.access(ffmpeg, os.X_OK)
    version = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True)
    assert version.returncode == 0 and "--enable-libx264" in version.stdout


IN_LAMBDA = r"""
import json, sys
from pathlib import Path

events, task_root, runtime = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

class Context:
    function_name = "anb-dev"
    aws_request_id = "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:anb-dev"
    memory_limit_in_mb = 1024
    def get_remaining_time_in_millis(self):
        return 29000

import handlers.api, handlers.worker  # what Lambda imports first: handlers/api.handler
import anb, boto3
from anb.core.migrations import upgrade_to_head
from anb.processing.ffmpeg import ffmpeg_exe

upgrade_to_head()  # the migrations ship in the package
load = lambda name: json.loads((events / name).read_text())
poison = load("sqs.json")
poison["Records"][0]["body"] = "not a job"
result = {
    "anb": anb.__file__,
    "handlers": handlers.api.__file__,
    "boto3": boto3.__file__,
    "site_packages": [p for p in sys.path if "site-packages" in p],
    "apigw": handlers.api.handler(load("apigw_v2.json"), Context()),
    "alb": handlers.api.handler(load("alb.json"), Context()),
    "sqs": handlers.worker.handler(load("sqs.json"), Context()),
    "poison": handlers.worker.handler(poison, Context()),
    "ffmpeg": ffmpeg_exe(),
}
print("RESULT " + json.dumps(result))
"""


def test_the_handlers_import_and_work_from_the_built_package(
    builds: Builds, tmp_path: Path
) -> None:
    """Only the package, the runtime's AWS SDK and the standard library on the path (no
    site-packages), as in /var/task on Lambda."""
    runtime = tmp_path / "var-runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        installed = importlib.import_module(name)
        (runtime / name).symlink_to(Path(installed.__file__).parent)
    ffmpeg = builds.layer / "bin" / "ffmpeg"
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{builds.importable}{os.pathsep}{runtime}",
        "ANB_DATA_DIR": str(tmp_path / "tmp-anb"),
        "ANB_DATABASE_URL": f"sqlite:///{tmp_path / 'anb.db'}",
        "ANB_JWT_SECRET": "lambda-test-secret-" + "x" * 32,
        "ANB_FFMPEG": str(ffmpeg),
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "ANB",
    }
    completed = subprocess.run(
        [sys.executable, "-S", "-c", IN_LAMBDA, str(EVENTS), str(builds.importable), str(runtime)],
        cwd=tmp_path,  # not the work tree: handlers/ must come from the package
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    (line,) = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert result["anb"].startswith(str(builds.importable))
    assert result["handlers"].startswith(str(builds.importable))
    assert result["boto3"].startswith(str(runtime))
    assert result["site_packages"] == []
    for answer in (result["apigw"], result["alb"]):
        assert answer["statusCode"] == 200
        assert json.loads(answer["body"]) == {"status": "healthy"}
    assert result["sqs"] == {"batchItemFailures": []}
    assert result["poison"] == {
        "batchItemFailures": [{"itemIdentifier": "2d3e4f50-6a7b-4c8d-9e0f-1a2b3c4d5e6f"}]
    }
    assert result["ffmpeg"] == str(ffmpeg)
