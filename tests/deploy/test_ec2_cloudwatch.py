"""CloudWatch for the EC2 deployment: the agent's configuration (ec2/cloudwatch-agent.json)
and the template's log groups and dashboard.
"""

from __future__ import annotations

import json
import re
from typing import Any

from anb.core import observability
from tests.support.cloudformation import Template, render_sub, resources, sub_text
from tests.support.ec2 import EC2, bootstrap_env, scripts_text, unit


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
