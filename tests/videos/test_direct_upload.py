"""Direct uploads: a presigned S3 POST (or the API's signed form), then /complete."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from anb.core.db import unit_of_work
from anb.storage import get_storage
from anb.videos.models import Video, VideoStatus
from anb.worker.batch import handle_batch
from tests.clips import Clips
from tests.support.api import Player, signup
from tests.support.backend import local_only, pending_jobs


def _start(client: TestClient, player: Player, path: Path, title: str = "Directo") -> dict:
    response = client.post(
        "/api/videos/uploads",
        headers=player.headers,
        json={"title": title, "size": path.stat().st_size},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _send(client: TestClient, grant: dict, path: Path, **field_changes: str) -> httpx.Response:
    fields = {**grant["upload_fields"], **field_changes}
    with path.open("rb") as handle:
        files = {"file": (path.name, handle, "video/mp4")}
        if grant["upload_url"].startswith(str(client.base_url)):
            return client.post(grant["upload_url"], data=fields, files=files)
        return httpx.post(grant["upload_url"], data=fields, files=files, timeout=60)


def _complete(client: TestClient, player: Player, video_id: str) -> httpx.Response:
    return client.post(f"/api/videos/{video_id}/complete", headers=player.headers)


def test_a_direct_upload_becomes_a_video_with_its_job(
    client: TestClient, player: Player, clips: Clips
) -> None:
    grant = _start(client, player, clips.landscape)
    assert set(grant) == {"video_id", "upload_url", "upload_fields", "expires_in"}
    assert grant["expires_in"] > 0
    assert client.get("/api/videos", headers=player.headers).json() == []  # not a video yet
    assert _send(client, grant, clips.landscape).status_code in (200, 201, 204)

    completed = _complete(client, player, grant["video_id"])
    assert completed.status_code == 202
    task_id = completed.json()["task_id"]
    assert pending_jobs() == [{"video_id": grant["video_id"], "task_id": task_id}]
    [video] = client.get("/api/videos", headers=player.headers).json()
    assert (video["video_id"], video["title"], video["status"]) == (
        grant["video_id"], "Directo", "uploaded",
    )  # fmt: skip
    again = _complete(client, player, grant["video_id"])
    assert (again.status_code, again.json()["task_id"]) == (202, task_id)

    event = {"Records": [_record(grant["video_id"], task_id)]}
    assert handle_batch(event) == {"batchItemFailures": []}
    assert _status(grant["video_id"]) == VideoStatus.processed


def test_the_worker_judges_a_direct_upload_with_the_upload_rules(
    client: TestClient, player: Player, clips: Clips
) -> None:
    grant = _start(client, player, clips.short)
    _send(client, grant, clips.short)
    task_id = _complete(client, player, grant["video_id"]).json()["task_id"]
    assert (
        handle_batch({"Records": [_record(grant["video_id"], task_id)]})["batchItemFailures"] == []
    )
    video = client.get(f"/api/videos/{grant['video_id']}", headers=player.headers).json()
    assert video["status"] == "failed"
    assert "la duración debe estar entre 20 y 60 segundos" in video["error"]


def test_completing_needs_the_file_and_the_owner(
    client: TestClient, player: Player, clips: Clips
) -> None:
    grant = _start(client, player, clips.landscape)
    early = _complete(client, player, grant["video_id"])
    assert early.status_code == 400 and "aún no se ha subido" in early.json()["detail"]
    _send(client, grant, clips.landscape)
    intruder = signup(client, email="intruso@example.com")
    assert _complete(client, intruder, grant["video_id"]).status_code == 403
    assert _complete(client, player, "00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.post(f"/api/videos/{grant['video_id']}/complete").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x", "size": 200 * 1024 * 1024}, "size"),
        ({"title": "x", "size": 0}, "size"),
        ({"title": " ", "size": 10}, "title"),
        ({"size": 10}, "title"),
    ],
)
def test_a_direct_upload_request_is_validated(
    client: TestClient, player: Player, body: dict, field: str
) -> None:
    response = client.post("/api/videos/uploads", headers=player.headers, json=body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{field}:")


def test_the_local_upload_form_is_signed_and_bounded(
    client: TestClient, player: Player, clips: Clips, configure, tmp_path: Path
) -> None:
    local_only("S3 enforces its own POST policy")
    grant = _start(client, player, clips.landscape)
    assert _send(client, grant, clips.landscape, key="videos/other/original.mp4").status_code == 403
    assert _send(client, grant, clips.landscape, expires="1").status_code == 403
    assert _send(client, grant, clips.landscape, max_bytes="999999999").status_code == 403
    configure(ANB_UPLOAD_MAX_BYTES="1000")
    tiny = tmp_path / "tiny.mp4"
    tiny.write_bytes(b"\0" * 500)
    small = _start(client, player, tiny)  # a grant for at most 1000 bytes
    too_big = _send(client, small, clips.landscape)
    assert too_big.status_code == 400 and "supera el tamaño máximo" in too_big.json()["detail"]
    assert _complete(client, player, small["video_id"]).status_code == 400


def _record(video_id: str, task_id: str) -> dict:
    template = json.loads((Path(__file__).parents[2] / "events" / "sqs.json").read_text())
    record = template["Records"][0]
    record["body"] = json.dumps({"video_id": video_id, "task_id": task_id})
    return record


def _status(video_id: str) -> VideoStatus:
    with unit_of_work() as session:
        return session.get(Video, video_id).status


def test_a_file_larger_than_declared_is_refused(
    client: TestClient, player: Player, clips: Clips, tmp_path: Path
) -> None:
    declared = tmp_path / "declared.mp4"
    declared.write_bytes(clips.landscape.read_bytes()[:1000])
    grant = _start(client, player, declared)  # grants 1000 bytes, then sends the whole clip
    sent = _send(client, grant, clips.landscape)
    if sent.status_code < 300:  # a store that does not enforce the form's limit itself
        refused = _complete(client, player, grant["video_id"])
        assert refused.status_code == 400 and "tamaño declarado" in refused.json()["detail"]
    else:
        assert sent.status_code == 400
    assert client.get("/api/videos", headers=player.headers).json() == []


def test_abandoned_direct_uploads_are_forgotten(
    client: TestClient, player: Player, clips: Clips
) -> None:
    from datetime import timedelta

    from anb.core.db import utcnow
    from anb.videos.models import UploadSession

    old = _start(client, player, clips.landscape)
    _send(client, old, clips.landscape)
    with unit_of_work() as session:
        session.get(UploadSession, old["video_id"]).created_at = utcnow() - timedelta(days=3)
    _start(client, player, clips.landscape)
    with unit_of_work() as session:
        assert session.get(UploadSession, old["video_id"]) is None
    assert _complete(client, player, old["video_id"]).status_code == 404


def test_completing_while_storage_is_down_answers_503_and_keeps_the_grant(
    client: TestClient,
    player: Player,
    clips: Clips,
    configure,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from anb.storage import get_storage
    from anb.storage.s3 import S3Storage

    if not isinstance(get_storage(), S3Storage):
        pytest.skip("AWS mode only: the embedded storage is a local directory")
    grant = _start(client, player, clips.landscape)
    _send(client, grant, clips.landscape)
    configure(AWS_ENDPOINT_URL_S3="http://127.0.0.1:1")  # nothing listens there
    refused = _complete(client, player, grant["video_id"])
    assert refused.status_code == 503 and refused.json()["detail"]
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    configure()  # storage is back
    assert _complete(client, player, grant["video_id"]).status_code == 202


def test_concurrent_completes_make_one_video_and_keep_its_original(
    live_server: str, clips: Clips
) -> None:
    """A double click or a client's retry: every /complete answers 202 with the same job,
    exactly one job is queued, and the original is kept (the loser once deleted it)."""
    with httpx.Client(base_url=live_server, timeout=60) as api:
        player = signup(api)
        grants = [_start(api, player, clips.landscape, title=f"Doble {n}") for n in range(3)]
        for grant in grants:
            assert _send(api, grant, clips.landscape).status_code in (200, 201, 204)

    def complete(video_id: str) -> httpx.Response:
        with httpx.Client(base_url=live_server, timeout=60) as own:
            return _complete(own, player, video_id)

    for grant in grants:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(complete, [grant["video_id"]] * 6))
        assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
        assert len({a.json()["task_id"] for a in answers}) == 1
        jobs = pending_jobs()
        assert [job["video_id"] for job in jobs] == [grant["video_id"]], jobs
        with unit_of_work() as session:
            original = session.get(Video, grant["video_id"]).original_key
        assert get_storage().size(original) == clips.landscape.stat().st_size
        assert handle_batch({"Records": [_record(grant["video_id"], jobs[0]["task_id"])]}) == {
            "batchItemFailures": []
        }
        assert _status(grant["video_id"]) == VideoStatus.processed


def test_s3_urls_and_upload_forms_are_signed_with_sigv4(
    client: TestClient, player: Player, clips: Clips
) -> None:
    from anb.storage.s3 import S3Storage

    if not isinstance(get_storage(), S3Storage):
        pytest.skip("AWS mode only: the embedded storage signs its own URLs")
    grant = _start(client, player, clips.landscape)
    fields = {name.lower(): value for name, value in grant["upload_fields"].items()}
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert "awsaccesskeyid" not in fields and "signature" not in fields  # SigV2's fields
    assert _send(client, grant, clips.landscape).status_code in (200, 201, 204)
    video_id = grant["video_id"]
    assert _complete(client, player, video_id).status_code == 202
    url = client.get(f"/api/videos/{video_id}", headers=player.headers).json()["original_url"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "AWSAccessKeyId=" not in url
    assert httpx.get(url, timeout=30).status_code == 200
