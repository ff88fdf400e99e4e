"""template.yaml: translated by the SAM translator, linted by cfn-lint, and checked resource
by resource (the event source, the queues, the bucket, the secrets, the environment)."""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode.cfn_yaml import loads
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
MIB = 1024 * 1024
UPLOAD_MAX_BYTES = 100 * MIB


def load_sam() -> dict[str, Any]:
    """template.yaml as plain data (short-form tags such as !Ref become Ref)."""
    return json.loads(json.dumps(loads(TEMPLATE.read_text())))


def translate(sam: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation that the AWS::Serverless transform makes of `sam`. Local code
    locations become S3 placeholders first, as `sam package` would make them."""
    sam = copy.deepcopy(sam)
    sam.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    for resource in sam["Resources"].values():
        properties = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            properties["CodeUri"] = "s3://anb-artifacts/function.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = "s3://anb-artifacts/layer.zip"
    translator = Translator(
        {}, Parser(), boto_session=boto3.session.Session(region_name=REGION)
    )  # the session only names the region: nothing is called
    try:
        return translator.translate(sam_template=sam, parameter_values={})
    except InvalidDocumentException as exc:
        pytest.fail(
            "SAM cannot translate template.yaml: " + "; ".join(c.message for c in exc.causes)
        )


def lint_errors(cfn: dict[str, Any]) -> list[str]:
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=[REGION]))
    return [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.id.startswith("E")]


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_sam()


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    return translate(sam)


def of_type(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == kind}


def props(cfn: dict[str, Any], name: str) -> dict[str, Any]:
    return cfn["Resources"][name]["Properties"]


def env(cfn: dict[str, Any], function: str) -> dict[str, Any]:
    return props(cfn, function)["Environment"]["Variables"]


def resolved(cfn: dict[str, Any], value: Any) -> Any:
    """A parameter reference resolved to its default (what `sam deploy` would take)."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in cfn["Parameters"]:
        return cfn["Parameters"][value["Ref"]]["Default"]
    return value


NO_VALUE = object()  # AWS::NoValue: the property is left out


def evaluate(cfn: dict[str, Any], value: Any, parameters: dict[str, str] | None = None) -> Any:
    """`value` as CloudFormation would deploy it with these parameter values (the others at
    their defaults): the functions and conditions this template uses, nothing more."""
    parameters = parameters or {}

    def value_of(node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((function, argument),) = node.items()
        if function == "Ref" and argument == "AWS::NoValue":
            return NO_VALUE
        if function == "Ref" and argument in cfn["Parameters"]:
            parameter = cfn["Parameters"][argument]
            given = str(parameters.get(argument, parameter.get("Default", "")))
            return given.split(",") if parameter["Type"] == "CommaDelimitedList" else given
        if function == "Fn::If":
            name, when_true, when_false = argument
            return value_of(when_true if holds(name) else when_false)
        if function == "Fn::Equals":
            return str(value_of(argument[0])) == str(value_of(argument[1]))
        if function == "Fn::Not":
            return not value_of(argument[0])
        if function == "Fn::Join":
            separator, items = argument
            items = value_of(items)
            return separator.join(str(value_of(item)) for item in items)
        return node

    def holds(condition: str) -> bool:
        return value_of(cfn["Conditions"][condition])

    return value_of(value)


def build_script() -> Any:
    """scripts/build_lambda.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "build_lambda", ROOT / "scripts" / "build_lambda.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_translated_template_passes_cfn_lint(cfn: dict[str, Any]) -> None:
    assert lint_errors(cfn) == []


def test_cfn_lint_does_find_errors(cfn: dict[str, Any]) -> None:
    """The lint above is no formality: a queue that hides messages for less time than the
    worker may run is an error."""
    broken = copy.deepcopy(cfn)
    props(broken, "JobQueue")["VisibilityTimeout"] = 60
    assert any(error.startswith("E3505") for error in lint_errors(broken))


def test_the_expected_resources_exist(cfn: dict[str, Any]) -> None:
    functions = of_type(cfn, "AWS::Lambda::Function")
    assert set(functions) == {"ApiFunction", "WorkerFunction"}
    assert len(of_type(cfn, "AWS::Lambda::LayerVersion")) == 1
    assert set(of_type(cfn, "AWS::SQS::Queue")) == {"JobQueue", "JobDeadLetterQueue"}
    assert set(of_type(cfn, "AWS::S3::Bucket")) == {"MediaBucket"}
    assert len(of_type(cfn, "AWS::ApiGatewayV2::Api")) == 1
    assert set(cfn["Outputs"]) >= {"ApiUrl", "MediaBucketName", "JobQueueUrl", "DeadLetterQueueUrl"}


@pytest.mark.parametrize(
    ("function", "module"), [("ApiFunction", "api"), ("WorkerFunction", "worker")]
)
def test_functions_run_python312_x86_64_with_the_ffmpeg_layer(
    cfn: dict[str, Any], function: str, module: str
) -> None:
    properties = props(cfn, function)
    assert properties["Runtime"] == "python3.12"
    assert properties["Architectures"] == ["x86_64"]
    assert properties["Handler"] == f"handlers/{module}.handler"
    assert (ROOT / "handlers" / f"{module}.py").is_file()
    (layer,) = of_type(cfn, "AWS::Lambda::LayerVersion")
    assert properties["Layers"] == [{"Ref": layer}]
    layer_props = props(cfn, layer)
    assert layer_props["CompatibleRuntimes"] == ["python3.12"]
    assert layer_props["CompatibleArchitectures"] == ["x86_64"]
    assert env(cfn, function)["ANB_FFMPEG"] == "/opt/bin/ffmpeg"  # a layer's bin/ is /opt/bin


def test_the_worker_event_source_reports_partial_failures_and_is_bounded(
    cfn: dict[str, Any],
) -> None:
    (mapping,) = of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
    properties = mapping["Properties"]
    assert properties["FunctionName"] == {"Ref": "WorkerFunction"}
    assert properties["EventSourceArn"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= properties["BatchSize"] <= 2
    concurrency = int(resolved(cfn, properties["ScalingConfig"]["MaximumConcurrency"]))
    assert 2 <= concurrency <= 1000  # the range Lambda accepts


@pytest.mark.parametrize("function", ["ApiFunction", "WorkerFunction"])
def test_the_database_certificate_is_verified_by_default(
    cfn: dict[str, Any], function: str
) -> None:
    """Unset, ANB_DATABASE_CA_FILE leaves pg8000 encrypting without checking the server's
    certificate (CERT_NONE): by default it names the RDS bundle that scripts/build_lambda puts
    in the package (/var/task on Lambda). An empty DatabaseCaFile still opts out."""
    shipped = f"/var/task/certs/{build_script().CA_BUNDLE_NAME}"
    assert cfn["Parameters"]["DatabaseCaFile"]["Default"] == shipped
    variable = env(cfn, function)["ANB_DATABASE_CA_FILE"]
    assert evaluate(cfn, variable) == shipped
    assert evaluate(cfn, variable, {"DatabaseCaFile": ""}) is NO_VALUE


def test_the_api_function_reserves_its_concurrency(cfn: dict[str, Any]) -> None:
    """Each execution environment serves one request and keeps its own database connections:
    the reservation bounds them (and the function's share of the account). 0 reserves nothing,
    for accounts whose concurrency quota leaves no room for a reservation."""
    reserved = props(cfn, "ApiFunction")["ReservedConcurrentExecutions"]
    assert 1 <= int(evaluate(cfn, reserved)) <= 20
    assert evaluate(cfn, reserved, {"ApiReservedConcurrency": "0"}) is NO_VALUE
    assert evaluate(cfn, reserved, {"ApiReservedConcurrency": "40"}) == "40"
    assert cfn["Parameters"]["ApiReservedConcurrency"]["MinValue"] == 0
    # The worker is bounded by its event source's MaximumConcurrency instead, which reserves
    # nothing; a reservation below it would only make the event source throttle itself.
    assert "ReservedConcurrentExecutions" not in props(cfn, "WorkerFunction")


def test_the_queue_hides_a_job_for_six_worker_timeouts(cfn: dict[str, Any]) -> None:
    timeout = props(cfn, "WorkerFunction")["Timeout"]
    assert props(cfn, "JobQueue")["VisibilityTimeout"] >= 6 * timeout


def test_jobs_go_to_the_dead_letter_queue_after_three_receives(cfn: dict[str, Any]) -> None:
    redrive = props(cfn, "JobQueue")["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 3
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobDeadLetterQueue", "Arn"]}
    # the worker's last attempt (ANB_MAX_ATTEMPTS) is the queue's last receive
    assert env(cfn, "WorkerFunction")["ANB_MAX_ATTEMPTS"] == "3"
    dlq = props(cfn, "JobDeadLetterQueue")
    assert dlq["MessageRetentionPeriod"] > props(cfn, "JobQueue")["MessageRetentionPeriod"]


def test_the_worker_is_sized_for_one_video(cfn: dict[str, Any]) -> None:
    worker = props(cfn, "WorkerFunction")
    variables = env(cfn, "WorkerFunction")
    assert worker["MemorySize"] >= 1769  # a whole vCPU or more for ffmpeg
    # ffmpeg is stopped (and the job retried) before Lambda would kill the function
    assert int(variables["ANB_JOB_TIMEOUT_SECONDS"]) < worker["Timeout"] <= 900
    # the original, the rendered clip and the ffmpeg scratch of one video, twice over
    assert worker["EphemeralStorage"]["Size"] * MIB >= 2 * (UPLOAD_MAX_BYTES + 100 * MIB)
    api = props(cfn, "ApiFunction")
    assert api["Timeout"] < 30  # the HTTP API answers 503 after 30 s anyway
    assert api["EphemeralStorage"]["Size"] * MIB > UPLOAD_MAX_BYTES


def test_the_media_bucket_is_private_encrypted_and_accepts_browser_uploads(
    cfn: dict[str, Any],
) -> None:
    bucket = props(cfn, "MediaBucket")
    block = bucket["PublicAccessBlockConfiguration"]
    assert all(
        block[flag] is True
        for flag in (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
    )
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (rule,) = bucket["CorsConfiguration"]["CorsRules"]
    assert {"POST", "GET"} <= set(rule["AllowedMethods"])
    assert "PUT" not in rule["AllowedMethods"] and "DELETE" not in rule["AllowedMethods"]
    aborts = [
        r
        for r in bucket["LifecycleConfiguration"]["Rules"]
        if "AbortIncompleteMultipartUpload" in r
    ]
    assert aborts and aborts[0]["Status"] == "Enabled"
    assert "AccessControl" not in bucket and "WebsiteConfiguration" not in bucket
    policy = props(cfn, "MediaBucketPolicy")["PolicyDocument"]["Statement"]
    assert all(statement["Effect"] == "Deny" for statement in policy)  # it only denies (no TLS)


SECRET_SETTINGS = ("ANB_DATABASE_URL", "ANB_JWT_SECRET")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@pytest.mark.parametrize("function", ["ApiFunction", "WorkerFunction"])
def test_no_secret_is_written_in_the_environment(cfn: dict[str, Any], function: str) -> None:
    variables = env(cfn, function)
    for name in SECRET_SETTINGS:
        value = variables[name]
        assert isinstance(value, dict), f"{name} is a literal"
        (reference,) = value.values()  # Fn::Sub of a dynamic reference built from a name
        assert re.fullmatch(r"\{\{resolve:secretsmanager:\$\{\w+\}:SecretString\}\}", reference)
        parameter = re.search(r"\$\{(\w+)\}", reference).group(1)
        assert cfn["Parameters"][parameter]["Type"] == "String"
        assert "://" not in cfn["Parameters"][parameter].get("Default", "")  # a name, not a value
    cache = variables["ANB_CACHE_URL"]
    assert cache == {"Ref": "RedisUrl"}
    assert cfn["Parameters"]["RedisUrl"]["Type"] == "AWS::SSM::Parameter::Value<String>"
    literals = json.dumps(variables)
    assert not CREDENTIALS_IN_URL.search(literals)
    assert not re.search(r"(?i)password|BEGIN [A-Z ]*PRIVATE KEY", literals)
    for name, parameter in cfn["Parameters"].items():
        default = str(parameter.get("Default", ""))
        assert not CREDENTIALS_IN_URL.search(default), name


def test_the_api_function_gets_the_anb_settings(cfn: dict[str, Any]) -> None:
    variables = env(cfn, "ApiFunction")
    assert variables["ANB_DATA_DIR"] == "/tmp/anb"  # the only writable place on Lambda
    assert variables["ANB_STORAGE_URL"] == {"Fn::Sub": "s3://${MediaBucket}/media"}
    assert variables["ANB_QUEUE_URL"] == {"Ref": "JobQueue"}
    assert variables["ANB_FFMPEG"] == "/opt/bin/ffmpeg"
    assert variables["ANB_MAX_ATTEMPTS"] == "3"
    assert int(variables["ANB_URL_TTL_SECONDS"]) >= 60
    assert variables["POWERTOOLS_SERVICE_NAME"] == "anb-api"
    assert set(variables) >= {"ANB_DATABASE_URL", "ANB_JWT_SECRET", "ANB_CACHE_URL"}
    assert variables["ANB_CORS_ORIGINS"] == {"Ref": "AllowedOrigins"}
    assert env(cfn, "WorkerFunction")["POWERTOOLS_SERVICE_NAME"] == "anb-worker"
    for function in ("ApiFunction", "WorkerFunction"):
        unknown = {name for name in env(cfn, function) if not _known_setting(name)}
        assert not unknown, f"{function}: not settings of anb: {unknown}"


def _known_setting(name: str) -> bool:
    from anb.core.settings import Settings

    if name.startswith("ANB_"):
        return name.removeprefix("ANB_").lower() in Settings.model_fields
    return name.startswith("POWERTOOLS_") or name == "IMAGEIO_FFMPEG_EXE"


def test_every_path_of_the_http_api_reaches_the_api_function(cfn: dict[str, Any]) -> None:
    (api,) = of_type(cfn, "AWS::ApiGatewayV2::Api").values()
    paths = api["Properties"]["Body"]["paths"]
    assert list(paths) == ["$default"]  # the catch-all route, "/" included
    integration = paths["$default"]["x-amazon-apigateway-any-method"][
        "x-amazon-apigateway-integration"
    ]
    assert integration["payloadFormatVersion"] == "2.0"
    assert "${ApiFunction.Arn}" in integration["uri"]["Fn::Sub"]
    permissions = of_type(cfn, "AWS::Lambda::Permission").values()
    assert any(p["Properties"]["Principal"] == "apigateway.amazonaws.com" for p in permissions)


def test_cors_is_answered_by_the_app_not_by_a_mistranslated_gateway(
    cfn: dict[str, Any],
) -> None:
    """An intrinsic AllowOrigins made SAM write the whole CORS object as a list (methods,
    headers and max age lost): API Gateway would refuse it or drop CORS. The gateway now
    passes every method, OPTIONS included, to the app, which answers CORS."""
    (api,) = of_type(cfn, "AWS::ApiGatewayV2::Api").values()
    assert "x-amazon-apigateway-cors" not in api["Properties"]["Body"]
    assert "CorsConfiguration" not in api["Properties"]


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["Statement"]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def _inline_statements(cfn: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in props(cfn, role).get("Policies", [])
        for statement in _statements(policy["PolicyDocument"])
    ]


def test_policy_templates_grant_on_this_stack_s_resources_only(cfn: dict[str, Any]) -> None:
    api = _inline_statements(cfn, "ApiFunctionRole")
    worker = _inline_statements(cfn, "WorkerFunctionRole")
    for statement in api + worker:
        assert statement["Effect"] == "Allow"
        assert statement["Resource"] != "*" and "*" not in _actions(statement)
        assert not any(action.endswith(":*") for action in _actions(statement))
    api_actions = set().union(*map(_actions, api))
    worker_actions = set().union(*map(_actions, worker))
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= api_actions & worker_actions
    assert "sqs:SendMessage*" in api_actions
    assert not any(action.startswith("sqs:") for action in worker_actions)
    # the SQS event polls with the managed policy SAM attaches (capped by the boundary)
    managed = props(cfn, "WorkerFunctionRole")["ManagedPolicyArns"]
    assert any(arn.endswith("/AWSLambdaSQSQueueExecutionRole") for arn in managed)


BOUNDARY_ACTIONS = {
    "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
    "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
    "s3:ListBucket", "s3:GetBucketLocation",
    "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
}  # fmt: skip


def test_a_permissions_boundary_caps_both_roles_to_this_stack(cfn: dict[str, Any]) -> None:
    """SAM's managed policies name every resource ("*"): the boundary is what keeps the
    functions to this stack's bucket, queue and logs."""
    for role in ("ApiFunctionRole", "WorkerFunctionRole"):
        assert props(cfn, role)["PermissionsBoundary"] == {"Ref": "FunctionPermissionsBoundary"}
    statements = _statements(props(cfn, "FunctionPermissionsBoundary")["PolicyDocument"])
    plain = [s for s in statements if "Fn::If" not in s]
    for statement in plain:
        assert statement["Effect"] == "Allow"
        assert "*" not in json.dumps(statement["Resource"]).replace(":*", "").replace("/*", "")
    granted = set().union(*map(_actions, plain))
    assert granted == BOUNDARY_ACTIONS  # no lifecycle or ACL changes, no secrets, no KMS
    by_sid = {s["Sid"]: s for s in plain}
    assert by_sid["Jobs"]["Resource"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}
    assert by_sid["MediaBucket"]["Resource"] == {"Fn::GetAtt": ["MediaBucket", "Arn"]}
    (conditional,) = [s for s in statements if "Fn::If" in s]
    condition, in_vpc, otherwise = conditional["Fn::If"]
    assert condition == "InVpc" and otherwise == {"Ref": "AWS::NoValue"}
    assert all(action.startswith("ec2:") for action in _actions(in_vpc))


def test_sam_build_and_scripts_build_lambda_agree(sam: dict[str, Any]) -> None:
    """Every resource that `sam build` builds with the Makefile has its target there, and
    each target calls scripts/build_lambda."""
    makefile = (ROOT / "Makefile").read_text()
    built = [
        name
        for name, resource in sam["Resources"].items()
        if resource.get("Metadata", {}).get("BuildMethod") == "makefile"
    ]
    assert set(built) == {"ApiFunction", "WorkerFunction", "FfmpegLayer"}
    for name in built:
        rule = re.search(rf"^(?:[\w-]+ )*build-{name}\b.*:\n\t(.+)$", makefile, re.MULTILINE)
        assert rule, f"Makefile has no build-{name} target"
        part = "layer" if name == "FfmpegLayer" else "function"
        assert rule.group(1) == f'scripts/build_lambda --only {part} "$(ARTIFACTS_DIR)"'
    code_uri = sam["Globals"]["Function"]["CodeUri"]
    assert code_uri == "." and sam["Resources"]["FfmpegLayer"]["Properties"]["ContentUri"] == "."


# What IAM allows each AWS call of the storage and queue adapters to do. boto3's managed
# transfers (upload_file, copy) go multipart past 8 MiB and abort what they started when a
# part fails; head_object needs ListBucket to answer 404, not 403, for a missing key; presigned
# URLs and forms act with the signer's rights when used. (`anb poll` receives on EC2 only: on
# Lambda the event source does, with the managed policy that the boundary caps.)
S3_CALLS = {
    "upload_file": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "download_file": {"s3:GetObject"},
    "head_object": {"s3:GetObject", "s3:ListBucket"},
    "copy": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
    "get_paginator": {"s3:ListBucket"},  # list_objects_v2
    "delete_objects": {"s3:DeleteObject"},
    "generate_presigned_url": {"s3:GetObject"},  # get_object
    "generate_presigned_post": {"s3:PutObject"},
    "head_bucket": {"s3:ListBucket"},
}
SQS_CALLS = {
    "send_message": {"sqs:SendMessage"},
    "get_queue_attributes": {"sqs:GetQueueAttributes"},
}


def _calls(module: str) -> set[str]:
    return set(re.findall(r"self\.client\.(\w+)\(", (ROOT / "src" / "anb" / module).read_text()))


def _allows(granted: set[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action, pattern) for pattern in granted)


def test_every_aws_call_of_the_code_is_allowed(cfn: dict[str, Any]) -> None:
    """By the boundary and by the roles' own policies: a call missing from either is denied.
    A new call in the adapters fails here until it is listed above with what it needs."""
    assert _calls("storage/s3.py") == set(S3_CALLS)
    assert _calls("queue/sqs.py") == set(SQS_CALLS)
    s3_needs = set().union(*S3_CALLS.values())
    sqs_needs = set().union(*SQS_CALLS.values())
    boundary = _statements(props(cfn, "FunctionPermissionsBoundary")["PolicyDocument"])
    capped = set().union(*(_actions(s) for s in boundary if "Fn::If" not in s))
    assert s3_needs | sqs_needs <= capped
    needs = {"ApiFunctionRole": s3_needs | sqs_needs, "WorkerFunctionRole": s3_needs}
    for role, needed in needs.items():
        granted = set().union(*map(_actions, _inline_statements(cfn, role)))
        assert {action for action in needed if not _allows(granted, action)} == set(), role


def test_logs_and_queues_go_with_the_development_stack(cfn: dict[str, Any]) -> None:
    """Explicit policies (cfn-lint I3011): the logs and the queues are deleted with the stack,
    or when replaced; the players' videos are kept."""
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=[REGION], include_checks=["I"]))
    assert [f"{m.message} ({m.path})" for m in matches if m.rule.id == "I3011"] == []
    stateful = {**of_type(cfn, "AWS::Logs::LogGroup"), **of_type(cfn, "AWS::SQS::Queue")}
    assert set(stateful) >= {"ApiLogGroup", "WorkerLogGroup", "JobQueue", "JobDeadLetterQueue"}
    for name, resource in stateful.items():
        assert resource.get("DeletionPolicy") == "Delete", name
        assert resource.get("UpdateReplacePolicy") == "Delete", name
    bucket = cfn["Resources"]["MediaBucket"]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"


def test_the_http_api_writes_access_logs(cfn: dict[str, Any]) -> None:
    """Throttled requests and gateway timeouts never reach the function's logs."""
    (stage,) = of_type(cfn, "AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["HttpApiLogGroup", "Arn"]}
    fields = json.loads(settings["Format"])
    assert {"requestId", "status", "integrationError"} <= set(fields)
    assert fields["path"] == "$context.path"  # no query string (nor anything signed in one)
    log_group = props(cfn, "HttpApiLogGroup")
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # a name under /aws/vendedlogs/ keeps the account's log delivery resource policy small
    assert log_group["LogGroupName"]["Fn::Sub"].startswith("/aws/vendedlogs/")


# The checkov findings this development stack accepts, each skipped in the template with its
# reason (checkov reads `Metadata: checkov: skip` on SAM resources too). Anything else that
# checkov finds is to be fixed.
CHECKOV_SKIPS = {
    "ApiFunction": {"CKV_AWS_116", "CKV_AWS_173"},  # no async DLQ; env: AWS managed key
    "WorkerFunction": {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_173"},  # bounded by its event source
    "ApiLogGroup": {"CKV_AWS_158"},  # CloudWatch Logs' own encryption, no KMS key
    "WorkerLogGroup": {"CKV_AWS_158"},
    "HttpApiLogGroup": {"CKV_AWS_158"},
    "JobQueue": {"CKV_AWS_27"},  # SSE-SQS, which checkov's CloudFormation check misses
    "JobDeadLetterQueue": {"CKV_AWS_27"},
    "MediaBucket": {"CKV_AWS_18", "CKV_AWS_21"},  # no access-log bucket, no versions
}


def test_checkov_findings_are_skipped_only_with_a_reason(sam: dict[str, Any]) -> None:
    skipped: dict[str, set[str]] = {}
    for name, resource in sam["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (name, skip)
            assert len(skip.get("comment", "")) >= 30, f"{name} {skip['id']}: say why"
            skipped.setdefault(name, set()).add(skip["id"])
    assert skipped == CHECKOV_SKIPS
    for queue in ("JobQueue", "JobDeadLetterQueue"):  # what CKV_AWS_27 does not see
        assert sam["Resources"][queue]["Properties"]["SqsManagedSseEnabled"] is True
