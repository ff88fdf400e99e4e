"""`anb posters`: videos published before the worker made posters get one, made from their
published clip, and the pages that list them show it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from anb.cli import main
from anb.core.db import unit_of_work
from anb.core.settings import get_settings
from anb.processing import poster
from anb.public.service import LIST_PAGE_FRESH_SECONDS
from anb.storage import get_storage
from anb.videos.models import Video
from anb.worker import posters
from anb.worker.batch import handle_batch
from anb.worker.posters import Backfilled
from tests import media
from tests.clips import MAIN_COLOUR, Clips
from tests.support.api import Player, download, upload, upload_public
from tests.worker.test_batch import job_body, sqs_event


def _video(video_id: str) -> Video:
    with unit_of_work() as session:
        video = session.get(Video, video_id)
        assert video is not None
        return video


def _stored_keys(video_id: str) -> set[str]:
    return set(get_storage().keys(f"videos/{video_id}/"))


def _published_without_poster(client: TestClient, player: Player, clip: Path) -> str:
    """A clip processed by the worker, then left as a clip published before posters were."""
    uploaded = upload(client, player, clip).json()
    video_id = uploaded["video_id"]
    assert (
        handle_batch(sqs_event(job_body(video_id, uploaded["task_id"])))["batchItemFailures"] == []
    )
    get_storage().delete(_video(video_id).thumbnail_key)
    with unit_of_work() as session:
        session.execute(update(Video).where(Video.id == video_id).values(thumbnail_key=None))
    return video_id


def test_a_video_published_without_a_poster_gets_one_and_the_lists_show_it(
    client: TestClient, player: Player, clips: Clips, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    video_id = _published_without_poster(client, player, clips.thumbnail_track_first)
    [before] = client.get("/api/public/videos").json()  # a page cached without a poster
    assert before["thumbnail_url"] is None

    assert main(["posters"]) == 0
    assert "posters: 1 made" in capsys.readouterr().err
    time.sleep(LIST_PAGE_FRESH_SECONDS)  # the cached page is refreshed by the next read

    video = _video(video_id)
    assert _stored_keys(video_id) == {video.original_key, video.processed_key, video.thumbnail_key}
    [public] = client.get("/api/public/videos").json()
    mine = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
    assert mine["thumbnail_url"], mine
    assert public["thumbnail_url"], public
    served = download(client, public["thumbnail_url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    image_path = tmp_path / "poster.jpg"
    image_path.write_bytes(served.content)
    assert "1280x720" in media.streams(image_path).video_line
    image = media.picture(image_path)  # the footage, not the bumper's card
    assert media.near(image[36][64], MAIN_COLOUR) and media.near(image[5][5], MAIN_COLOUR)

    assert main(["posters"]) == 0  # again: nothing left to do, nothing changed
    assert "every processed video has one" in capsys.readouterr().err
    assert _video(video_id).thumbnail_key == video.thumbnail_key


def test_a_video_whose_clip_is_missing_is_named_and_left_as_it_is(
    client: TestClient, player: Player, clips: Clips, capsys: pytest.CaptureFixture
) -> None:
    video_id = upload_public(client, player, clips.landscape)  # published without a poster
    kept = upload_public(client, player, clips.landscape)
    get_storage().delete(_video(video_id).processed_key)

    assert main(["posters"]) == 1
    said = capsys.readouterr().err
    assert f"video {video_id}: clip missing" in said
    assert "posters: 1 made, 1 clip missing" in said
    assert _video(video_id).thumbnail_key is None and _stored_keys(video_id) == set()
    assert _video(kept).thumbnail_key is not None  # the others are still done


def test_a_video_given_a_poster_meanwhile_keeps_it_and_nothing_is_left_behind(
    client: TestClient, player: Player, clips: Clips, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs at once: the one that publishes second deletes the image it made."""
    video_id = upload_public(client, player, clips.landscape)
    made_first = f"videos/{video_id}/processed-first.jpg"
    make = poster.make_poster_of_published

    def made_meanwhile(clip: Path, target: Path, *, timeout_seconds: float) -> None:
        make(clip, target, timeout_seconds=timeout_seconds)
        other = shutil.copy(target, target.with_name("other.jpg"))
        get_storage().put_file(Path(other), made_first)
        with unit_of_work() as session:
            session.execute(
                update(Video).where(Video.id == video_id).values(thumbnail_key=made_first)
            )

    monkeypatch.setattr(poster, "make_poster_of_published", made_meanwhile)
    outcomes = posters.backfill_posters(get_settings(), get_storage())
    assert outcomes == {Backfilled.changed: 1}
    assert _video(video_id).thumbnail_key == made_first
    assert _stored_keys(video_id) == {_video(video_id).original_key, made_first}


def test_a_clip_that_cannot_be_read_fails_its_poster_only(
    client: TestClient,
    player: Player,
    clips: Clips,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    video_id = upload_public(client, player, clips.landscape)
    truncated = Path(shutil.copy(clips.truncated, tmp_path))  # storage takes the file it puts
    get_storage().put_file(truncated, _video(video_id).processed_key)

    assert main(["posters"]) == 1
    assert f"video {video_id}: failed" in capsys.readouterr().err
    assert _video(video_id).thumbnail_key is None
    assert _stored_keys(video_id) == {_video(video_id).processed_key}
