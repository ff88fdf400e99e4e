"""handle_batch with Lambda-shaped SQS events (events/sqs.json): every kind of record."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from anb.core.db import unit_of_work
from anb.processing import poster
from anb.processing.pipeline import PipelineFailed
from anb.processing.probe import probe
from anb.storage import get_storage
from anb.videos.models import Video, VideoStatus
from anb.worker.batch import handle_batch
from anb.worker.jobs import GAVE_UP
from tests import media
from tests.clips import MAIN_COLOUR, Clips
from tests.support.api import Player, download, upload
from tests.support.services import reset_process_state

EVENT = json.loads((Path(__file__).parents[2] / "events" / "sqs.json").read_text())


def sqs_event(*bodies: str, receive_count: int = 1) -> dict:
    template = EVENT["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = copy.deepcopy(template)
        record["messageId"] = f"message-{index}"
        record["body"] = body
        record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        records.append(record)
    return {"Records": records}


def job_body(video_id: str, task_id: str) -> str:
    return json.dumps({"video_id": video_id, "task_id": task_id})


@pytest.fixture
def uploaded(client: TestClient, player: Player, clips: Clips) -> dict[str, str]:
    response = upload(client, player, clips.landscape)
    assert response.status_code == 201
    return response.json()


def _video(video_id: str) -> Video | None:
    with unit_of_work() as session:
        return session.get(Video, video_id)


def _stored_keys(video_id: str) -> set[str]:
    return set(get_storage().keys(f"videos/{video_id}/"))


def test_a_job_publishes_the_processed_clip_beside_the_original(
    uploaded: dict, tmp_path: Path
) -> None:
    event = sqs_event(job_body(uploaded["video_id"], uploaded["task_id"]))
    assert handle_batch(event) == {"batchItemFailures": []}
    video = _video(uploaded["video_id"])
    assert video.status == VideoStatus.processed
    assert video.processed_at is not None and video.error is None and video.claim_token is None
    assert _stored_keys(video.id) == {video.original_key, video.processed_key, video.thumbnail_key}
    output = tmp_path / "processed.mp4"
    get_storage().get_file(video.processed_key, output)
    assert (probe(output).width, probe(output).height) == (1280, 720)
    assert video.thumbnail_key == video.processed_key.replace(".mp4", ".jpg")  # beside it


def test_the_poster_is_served_as_thumbnail_url_once_processed(
    client: TestClient, player: Player, clips: Clips, tmp_path: Path
) -> None:
    """On the clip whose first track is a red thumbnail: the poster shows the footage."""
    uploaded = upload(client, player, clips.thumbnail_track_first, "Portada").json()
    video_id = uploaded["video_id"]
    before = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
    assert before["status"] == "uploaded" and before["thumbnail_url"] is None
    assert handle_batch(sqs_event(job_body(video_id, uploaded["task_id"]))) == {
        "batchItemFailures": []
    }

    video = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
    [listed] = client.get("/api/videos", headers=player.headers).json()
    [public] = client.get("/api/public/videos").json()
    for shown in (video, listed, public):
        assert urlsplit(shown["thumbnail_url"]).query  # signed and expiring
        served = download(client, shown["thumbnail_url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
    poster = tmp_path / "poster.jpg"
    poster.write_bytes(served.content)
    assert "Video: mjpeg" in media.streams(poster).video_line
    assert "1280x720" in media.streams(poster).video_line
    image = media.picture(poster)
    assert media.near(image[36][64], MAIN_COLOUR) and media.near(image[5][5], MAIN_COLOUR)


@pytest.mark.parametrize(("receive_count", "status"), [(1, "processing"), (3, "failed")])
def test_a_poster_that_cannot_be_made_fails_the_attempt_and_stores_nothing(
    uploaded: dict, monkeypatch: pytest.MonkeyPatch, receive_count: int, status: str
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise PipelineFailed("no frame for the poster")

    monkeypatch.setattr(poster, "make_poster", broken)
    event = sqs_event(
        job_body(uploaded["video_id"], uploaded["task_id"]), receive_count=receive_count
    )
    expected = [] if status == "failed" else [{"itemIdentifier": "message-0"}]
    assert handle_batch(event) == {"batchItemFailures": expected}  # retried like a render
    video = _video(uploaded["video_id"])
    assert video.status == status and video.thumbnail_key is None
    assert _stored_keys(video.id) == {video.original_key}


def test_a_duplicate_job_succeeds_doing_nothing(uploaded: dict) -> None:
    body = job_body(uploaded["video_id"], uploaded["task_id"])
    handle_batch(sqs_event(body))
    first = _video(uploaded["video_id"])
    assert handle_batch(sqs_event(body)) == {"batchItemFailures": []}
    again = _video(uploaded["video_id"])
    assert (again.processed_key, again.processed_at) == (first.processed_key, first.processed_at)
    assert len(_stored_keys(first.id)) == 3


def test_two_copies_in_one_batch_publish_once(uploaded: dict) -> None:
    body = job_body(uploaded["video_id"], uploaded["task_id"])
    assert handle_batch(sqs_event(body, body)) == {"batchItemFailures": []}
    video = _video(uploaded["video_id"])
    assert video.status == VideoStatus.processed
    assert len(_stored_keys(video.id)) == 3  # the original, one processed clip, its poster


def test_a_job_for_a_deleted_video_succeeds_and_leaves_nothing(
    client: TestClient, player: Player, uploaded: dict
) -> None:
    assert (
        client.delete(f"/api/videos/{uploaded['video_id']}", headers=player.headers).status_code
        == 200
    )
    event = sqs_event(job_body(uploaded["video_id"], uploaded["task_id"]))
    assert handle_batch(event) == {"batchItemFailures": []}
    assert _stored_keys(uploaded["video_id"]) == set()


def test_a_job_with_a_stale_task_id_does_nothing(uploaded: dict) -> None:
    event = sqs_event(job_body(uploaded["video_id"], "another-task"))
    assert handle_batch(event) == {"batchItemFailures": []}
    assert _video(uploaded["video_id"]).status == VideoStatus.uploaded


@pytest.mark.parametrize("body", ["not json", "{}", '{"video_id": 5, "task_id": "x"}', "[1]"])
def test_a_poison_body_fails_only_its_record(uploaded: dict, body: str) -> None:
    good = job_body(uploaded["video_id"], uploaded["task_id"])
    response = handle_batch(sqs_event(body, good))
    assert response == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}
    assert _video(uploaded["video_id"]).status == VideoStatus.processed


def test_an_unreadable_video_fails_with_a_reason_and_the_record_succeeds(
    uploaded: dict, clips: Clips, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clips.truncated.read_bytes())  # as a broken direct upload would be
    get_storage().put_file(broken, _video(uploaded["video_id"]).original_key)
    event = sqs_event(job_body(uploaded["video_id"], uploaded["task_id"]))
    assert handle_batch(event) == {"batchItemFailures": []}
    video = _video(uploaded["video_id"])
    assert video.status == VideoStatus.failed
    assert video.error == "el archivo está incompleto o dañado."


def test_a_transient_failure_fails_the_record_and_keeps_the_video(
    uploaded: dict, configure
) -> None:
    configure(ANB_DATABASE_URL="postgresql+pg8000://nobody@127.0.0.1:1/down")
    event = sqs_event(job_body(uploaded["video_id"], uploaded["task_id"]))
    assert handle_batch(event) == {"batchItemFailures": [{"itemIdentifier": "message-0"}]}
    configure()  # the database is back
    assert _video(uploaded["video_id"]).status == VideoStatus.uploaded
    assert handle_batch(event) == {"batchItemFailures": []}
    assert _video(uploaded["video_id"]).status == VideoStatus.processed


@pytest.mark.parametrize(("receive_count", "status"), [(2, "processing"), (3, "failed")])
def test_the_last_attempt_marks_the_video_failed(
    uploaded: dict, configure, receive_count: int, status: str
) -> None:
    configure(ANB_FFMPEG=str(Path("/nonexistent/ffmpeg")))  # e.g. a broken layer
    event = sqs_event(
        job_body(uploaded["video_id"], uploaded["task_id"]), receive_count=receive_count
    )
    expected = [] if status == "failed" else [{"itemIdentifier": "message-0"}]
    assert handle_batch(event) == {"batchItemFailures": expected}
    video = _video(uploaded["video_id"])
    assert video.status == status
    assert video.error == (GAVE_UP if status == "failed" else None)
    assert _stored_keys(video.id) == {video.original_key}


def test_metrics_are_emitted_as_emf(uploaded: dict, capsys: pytest.CaptureFixture) -> None:
    handle_batch(sqs_event(job_body(uploaded["video_id"], uploaded["task_id"])))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    metrics = {m["Name"] for line in lines for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"VideosProcessed", "ProcessingSeconds", "InputBytes", "OutputBytes"} <= metrics


def test_job_logs_carry_the_ids(uploaded: dict, capsys: pytest.CaptureFixture) -> None:
    handle_batch(sqs_event(job_body(uploaded["video_id"], uploaded["task_id"])))
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"level"' in line]
    done = [line for line in logs if line["message"].startswith("job done")]
    assert done and done[0]["video_id"] == uploaded["video_id"]
    assert done[0]["task_id"] == uploaded["task_id"]
    assert (
        done[0]["correlation_id"]
        == EVENT["Records"][0]["messageAttributes"]["correlation_id"]["stringValue"]
    )


def test_storage_adapter_is_shared_with_the_api(uploaded: dict) -> None:
    reset_process_state()
    assert get_storage().exists(_video(uploaded["video_id"]).original_key)


def test_an_attempt_that_loses_its_claim_leaves_the_video_to_the_winner(uploaded: dict) -> None:
    from anb.cache import get_cache
    from anb.core.settings import get_settings
    from anb.worker import jobs

    job = jobs.Job(uploaded["video_id"], uploaded["task_id"])
    worker = jobs.Worker(settings=get_settings(), storage=get_storage(), cache=get_cache())
    stolen: list[jobs.Claim | None] = []

    def another_attempt_claims(_fraction: float) -> None:
        if not stolen:
            stolen.append(jobs._claim(job))  # a duplicate delivery starts meanwhile

    last = get_settings().max_attempts
    report = worker.handle(job, attempt=last, on_progress=another_attempt_claims)
    assert report.outcome == jobs.Outcome.skipped  # not failed: the other attempt will publish
    video = _video(job.video_id)
    assert video.status == VideoStatus.processing and video.claim_token == stolen[0].token
    assert _stored_keys(job.video_id) == {video.original_key}  # the loser's output is gone
    with pytest.raises(jobs.ClaimLost):
        worker.handle(job, attempt=1, on_progress=lambda _: stolen.append(jobs._claim(job)))
