"""ec2/anb.yaml created as a stack in moto's CloudFormation (its HTTP server), with both sets of
conditions: every reference, condition, GetAtt and DependsOn must resolve, and the resources
moto models must come out wired to each other (queue URL in SSM, groups on their launch
templates, the redrive policy, the HTTPS listener when a certificate is given).

moto is not CloudFormation, and two of its gaps are bridged here, on the test's copy only:
- it has no `Fn::Cidr`: resolved beforehand with `ipaddress`, as CloudFormation would;
- it skips resource types it does not model (`UNMODELLED` below), and cannot give the
  attributes of a few it does: those attributes (`GetAtt`, `${Res.Attr}`) become
  placeholders. The template's own checks (test_ec2_template.py, cfn-lint, checkov) cover them.
It does not wait for the groups' boot signals either: the CreationPolicy is checked in
test_ec2_template.py.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.aws import AWS_ENV

# moto warns once per unmodelled resource; UNMODELLED below is the checked list of them
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS.*:UserWarning")
cfn_yaml = pytest.importorskip("cfnlint.decode.cfn_yaml", reason="cfn-lint is not installed")

TEMPLATE = Path(__file__).resolve().parents[2] / "ec2" / "anb.yaml"
# Resource types of the template that moto 5's CloudFormation does not model (it logs "No Moto
# CloudFormation support" and creates nothing). Kept exact, so that a new type in the template
# or a new model in moto is noticed.
UNMODELLED = {
    "AWS::AutoScaling::ScalingPolicy",
    "AWS::CloudWatch::Alarm",
    "AWS::EC2::SecurityGroupEgress",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::ElastiCache::SubnetGroup",
    "AWS::S3::BucketPolicy",
    "AWS::SecretsManager::Secret",
    "AWS::SecretsManager::SecretTargetAttachment",
    "AWS::SNS::Subscription",
}
DEFAULTS = {"ArtifactBucket": "anb-releases", "ArtifactPrefix": "anb/releases/0.1.0"}
ALTERNATIVE = {
    **DEFAULTS,
    "VpcCidr": "10.77.0.0/16",
    "HighlyAvailableNat": "false",
    "DbMultiAZ": "false",
    "CacheMultiAZ": "true",
    "AlarmEmail": "ops@example.com",
    "CertificateArn": "requested in the test",
}


def moto_types() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


def resolve_cidr(node: Any, vpc_cidr: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::Cidr"}:
            block, count, host_bits = node["Fn::Cidr"]
            assert block == {"Ref": "VpcCidr"}, "only the VPC's block is cut"
            subnets = ipaddress.ip_network(vpc_cidr).subnets(new_prefix=32 - int(host_bits))
            return [str(subnet) for subnet, _ in zip(subnets, range(int(count)), strict=False)]
        return {key: resolve_cidr(value, vpc_cidr) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_cidr(value, vpc_cidr) for value in node]
    return node


def moto_answers(kind: str, attribute: str, *, in_sub: bool) -> bool:
    """Whether moto's model of `kind` can give `attribute` (its `Fn::Sub` splits a dotted
    attribute such as `${Database.Endpoint.Address}` at the first dot, so those cannot be)."""
    from moto.cloudformation.parsing import get_model_map

    model = get_model_map().get(kind)
    if model is None or not hasattr(model, "get_cfn_attribute"):
        return False
    return model.has_cfn_attr(attribute) and not (in_sub and "." in attribute)


def placeholders_for(node: Any, kinds: dict[str, str]) -> Any:
    """Attributes (`GetAtt`, `${Res.Attr}`) that moto cannot give, replaced by literal text."""

    def placeholder(name: str, attribute: str) -> str:
        return f"unmodelled-{name}-{attribute}".lower()

    def sub_reference(match: re.Match[str]) -> str:
        name, attribute = match[1], match[2]
        if name in kinds and not moto_answers(kinds[name], attribute, in_sub=True):
            return placeholder(name, attribute)
        return match[0]

    if isinstance(node, dict):
        if set(node) == {"Fn::GetAtt"}:
            name, attribute = node["Fn::GetAtt"]
            if not moto_answers(kinds[name], attribute, in_sub=False):
                return placeholder(name, attribute)
        return {key: placeholders_for(value, kinds) for key, value in node.items()}
    if isinstance(node, list):
        return [placeholders_for(value, kinds) for value in node]
    if isinstance(node, str):
        return re.sub(r"\$\{([A-Za-z0-9]+)\.([A-Za-z.]+)\}", sub_reference, node)
    return node


def template_for_moto(parameters: dict[str, str]) -> dict[str, Any]:
    document = json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))
    vpc_cidr = parameters.get("VpcCidr", document["Parameters"]["VpcCidr"]["Default"])
    document = resolve_cidr(document, vpc_cidr)
    kinds = {name: resource["Type"] for name, resource in document["Resources"].items()}
    return placeholders_for(document, kinds)


@pytest.fixture
def aws_client(moto_endpoint: str) -> Iterator[Any]:
    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    yield client


def test_moto_skips_only_the_known_resource_types() -> None:
    document = json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))
    types = {resource["Type"] for resource in document["Resources"].values()}
    assert types - moto_types() == UNMODELLED


@pytest.mark.parametrize("parameters", [DEFAULTS, ALTERNATIVE], ids=["defaults", "alternative"])
def test_the_stack_is_created(aws_client: Any, parameters: dict[str, str]) -> None:
    cloudformation, s3 = aws_client("cloudformation"), aws_client("s3")
    stack = f"anb-{'alt' if parameters is ALTERNATIVE else 'default'}"
    if parameters.get("CertificateArn"):  # the listener refers to a certificate that exists
        certificate = aws_client("acm").request_certificate(DomainName="anb.example.com")
        parameters = {**parameters, "CertificateArn": certificate["CertificateArn"]}
    document = template_for_moto(parameters)
    bucket = f"{stack}-templates"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="anb.json", Body=json.dumps(document).encode())
    cloudformation.create_stack(
        StackName=stack,
        TemplateURL=f"https://{bucket}.s3.amazonaws.com/anb.json",  # as the README deploys it
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")

    summaries = cloudformation.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    assert {s["ResourceStatus"] for s in summaries} == {"CREATE_COMPLETE"}
    # moto lists an unmodelled resource with an empty logical id
    created = {s["LogicalResourceId"]: s for s in summaries if s["LogicalResourceId"]}
    conditions = conditions_of(parameters)
    active = {
        name: resource["Type"]
        for name, resource in document["Resources"].items()
        if conditions.get(resource.get("Condition"), True)
    }
    assert set(created) == {name for name, kind in active.items() if kind not in UNMODELLED}

    check_wiring(aws_client, stack, created, parameters)


def conditions_of(parameters: dict[str, str]) -> dict[str, bool]:
    return {
        "HasTwoNatGateways": parameters.get("HighlyAvailableNat", "true") == "true",
        "HasAlarmEmail": bool(parameters.get("AlarmEmail")),
        "HasCertificate": bool(parameters.get("CertificateArn")),
    }


def check_wiring(
    aws_client: Any, stack: str, created: dict[str, Any], parameters: dict[str, str]
) -> None:
    physical = {name: summary["PhysicalResourceId"] for name, summary in created.items()}
    ssm, sqs = aws_client("ssm"), aws_client("sqs")
    queue_url = ssm.get_parameter(Name=f"/{stack}/config/env/ANB_QUEUE_URL")["Parameter"]
    assert queue_url["Value"] == physical["JobQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url["Value"], AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(
        ":" + physical["JobDeadLetterQueue"].split("/")[-1]
    )
    trusted = ssm.get_parameter(Name=f"/{stack}/config/env/ANB_TRUSTED_PROXIES")["Parameter"]
    assert trusted["Value"] == parameters.get("VpcCidr", "10.40.0.0/16")

    groups = aws_client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[physical["ApiGroup"], physical["WorkerGroup"]]
    )["AutoScalingGroups"]
    templates = {g["AutoScalingGroupName"]: g["LaunchTemplate"]["LaunchTemplateId"] for g in groups}
    assert templates == {
        physical["ApiGroup"]: physical["ApiLaunchTemplate"],
        physical["WorkerGroup"]: physical["WorkerLaunchTemplate"],
    }
    assert physical["WorkerGroup"].startswith(f"{stack}-WorkerGroup-"), "the IAM name pattern"

    listeners = aws_client("elbv2").describe_listeners(LoadBalancerArn=physical["LoadBalancer"])
    ports = sorted(listener["Port"] for listener in listeners["Listeners"])
    assert ports == ([80, 443] if parameters.get("CertificateArn") else [80])
