"""The EC2 template, ec2/anb.yaml: cfn-lint, and its security-relevant shape.

Nothing here calls AWS. The shape is asserted on the parsed document by `check_*` functions,
which the `test_checks_catch` cases also run on broken copies of the template to prove that
they fail when something is wrong.

cfn-lint is a test tool: without it these tests skip, saying why, or fail with
ANB_REQUIRE_SERVICES=1 (as in CI).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from anb import gunicorn_conf
from tests.support.cloudformation import (
    Template,
    as_list,
    props,
    resources,
    sub_text,
    target,
)
from tests.support.ec2 import (
    APP_PORT,
    EC2,
    JOB_SECONDS,
    ROOT,
    TEMPLATE,
    bootstrap_env,
    termination_hook,
    timespan,
    unit,
    user_data,
)
from tests.support.services import missing_tool

WEB_PORTS = {("tcp", 80, 80), ("tcp", 443, 443)}
INTERNET = {"0.0.0.0/0", "::/0"}


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
    # instances reach S3 and SQS through them from their first boot step
    endpoint_ids = set(resources(template, "AWS::EC2::VPCEndpoint"))
    for group in ("ApiGroup", "WorkerGroup"):
        depends_on = set(as_list(template["Resources"][group].get("DependsOn", [])))
        assert endpoint_ids <= depends_on, f"{group} may boot before {endpoint_ids - depends_on}"


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


INLINE_TEMPLATE_BYTES = 51_200  # CloudFormation's limit for a template sent in the request
S3_TEMPLATE_BYTES = 1_000_000  # and for one read from S3 (AWS CloudFormation quotas)


def _documented_deploy_commands() -> list[str]:
    """Every `aws cloudformation deploy` of the EC2 deployment guide, continuation lines joined."""
    text = (ROOT / "docs" / "deploy-ec2.md").read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if "aws cloudformation deploy" in line]


def test_the_documented_deploy_commands_accept_the_template_size() -> None:
    size = len((EC2 / "anb.yaml").read_bytes())
    commands = _documented_deploy_commands()
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
