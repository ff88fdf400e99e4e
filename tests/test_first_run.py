"""What a person meets first: the docs (offline), their menus, and the console of `anb serve`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.clips import Clips
from tests.support.api import signup, upload
from tests.support.servers import anb_serve_command, free_port, served, server_env

EMBEDDED = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@EMBEDDED
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_nothing_from_outside(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert "://" not in html.text  # no CDN, no fonts: every URL is the API's own
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert ASSET_TYPES[Path(asset).suffix] in answer.headers["content-type"], asset


@EMBEDDED
def test_every_operation_has_a_summary_of_its_own(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = [
        (method, path, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
    summaries = [operation.get("summary", "") for _, _, operation in operations]
    for (method, path, operation), summary in zip(operations, summaries, strict=True):
        assert summary and summary != _fastapi_default_summary(operation, path, method), path
    assert len(set(summaries)) == len(summaries), summaries  # no "Health" listed twice


def _fastapi_default_summary(operation: dict, path: str, method: str) -> str:
    """FastAPI's summary when a route gives none: its function's name, title-cased (the name
    is what the operation id starts with)."""
    suffix = re.sub(r"\W", "_", path) + f"_{method}"
    return operation["operationId"].removesuffix(suffix).replace("_", " ").title()


def test_the_serve_console_is_for_people(tmp_path: Path, clips: Clips) -> None:
    port = free_port()
    env = server_env(tmp_path / "data")
    for name in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"):
        env.pop(name, None)  # the default of `anb serve` is under test
    with served(anb_serve_command(port), env, port, tmp_path / "serve.log") as server:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            _process_one_video(client, clips)
        output = server.output
    url = f"http://127.0.0.1:{port}"
    assert f"ANB Rising Stars Showcase API on {url}" in output, output
    assert f"docs:     {url}/docs" in output
    assert "mode:     embedded: SQLite " in output
    assert "worker:   running in this process" in output
    assert "database: schema created" in output  # a fresh data dir
    assert "alembic" not in output
    assert "Uvicorn running on" not in output  # the banner says it, once
    metrics = [line for line in output.splitlines() if '"_aws"' in line]
    assert metrics == [], metrics  # EMF lines are for CloudWatch, not for a console


def _process_one_video(client: httpx.Client, clips: Clips) -> None:
    """An upload processed to the end: the embedded worker has recorded its metrics."""
    player = signup(client)
    accepted = upload(client, player, clips.landscape)
    assert accepted.status_code == 201, accepted.text
    video_url = f"/api/videos/{accepted.json()['video_id']}"
    deadline = time.monotonic() + 120
    while client.get(video_url, headers=player.headers).json()["status"] != "processed":
        assert time.monotonic() < deadline, "the embedded worker did not process the video"
        time.sleep(0.5)


def test_emf_lines_still_reach_cloudwatch_where_it_reads_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lambda and `anb poll` on EC2 keep emitting; only `anb serve` turns them off."""
    from anb.core import observability

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    observability.count("VideosProcessed")
    observability.flush_metrics()
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["_aws"]["CloudWatchMetrics"][0]["Namespace"] for line in emitted] == ["ANB"]

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")  # restored afterwards, whatever is set
    observability.keep_metrics_off_the_console()
    observability.count("VideosProcessed")
    observability.flush_metrics()
    assert capsys.readouterr().out == ""
    assert not observability.worker_metrics().metric_set  # dropped, not piling up


def test_the_banner_names_each_service_and_no_secret() -> None:
    from anb.cli import _banner
    from anb.core.settings import Settings

    settings = Settings(
        database_url="postgresql+pg8000://anb:db-password@db.example.com/anb",
        storage_url="s3://anb-media/videos",
        queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/anb-jobs",
        cache_url="rediss://:cache-token@cache.example.com:6380/0",
    )
    banner = "\n".join(_banner(settings, url="http://localhost:8000", embedded_worker=False))
    assert (
        "mode:     services: PostgreSQL anb on db.example.com:5432, S3 s3://anb-media/videos,"
        in banner
    )
    assert "SQS anb-jobs, Redis cache.example.com:6380" in banner
    assert "`anb poll`" in banner
    assert "password" not in banner and "token" not in banner
