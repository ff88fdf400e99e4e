"""What interrupted work leaves behind is swept: abandoned direct uploads with their files,
scratch files of cut-short uploads and jobs; and open direct-upload grants are bounded."""

from __future__ import annotations

import os
import shutil
import signal
import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from anb.core.db import unit_of_work, utcnow
from anb.core.settings import get_settings
from anb.storage import get_storage
from anb.videos.models import UploadSession, incoming_key_for
from anb.worker.sweep import sweep_once, sweep_scratch
from tests.clips import Clips
from tests.support.api import Player
from tests.support.servers import anb_serve_command, free_port, served, server_env

OLD = time.time() - 3 * 24 * 3600


def _grant(client: TestClient, player: Player, size: int = 1000) -> dict:
    response = client.post(
        "/api/videos/uploads", headers=player.headers, json={"title": "Directo", "size": size}
    )
    assert response.status_code == 201, response.text
    return response.json()


def _age(video_id: str, days: int) -> None:
    with unit_of_work() as session:
        session.execute(
            update(UploadSession)
            .where(UploadSession.video_id == video_id)
            .values(created_at=utcnow() - timedelta(days=days))
        )


def test_open_direct_upload_grants_are_bounded(
    client: TestClient, player: Player, configure
) -> None:
    configure(ANB_MAX_OPEN_UPLOADS="2")
    grants = [_grant(client, player) for _ in range(2)]
    refused = client.post(
        "/api/videos/uploads", headers=player.headers, json={"title": "Tercera", "size": 1000}
    )
    assert refused.status_code == 429, refused.text
    assert "2 cargas directas abiertas" in refused.json()["detail"]
    ttl = get_settings().url_ttl_seconds
    assert ttl - 60 <= int(refused.headers["Retry-After"]) <= ttl
    _age(grants[0]["video_id"], days=1)  # its form has expired: no file can come any more
    assert _grant(client, player)["video_id"]


def test_abandoned_direct_uploads_and_their_files_are_swept(
    client: TestClient, player: Player, clips: Clips, tmp_path: Path
) -> None:
    stale, fresh = _grant(client, player), _grant(client, player)
    storage = get_storage()
    for grant in (stale, fresh):
        sent = shutil.copy(clips.landscape, tmp_path / f"{grant['video_id']}.mp4")
        storage.put_file(Path(sent), incoming_key_for(grant["video_id"]))  # moves it
    _age(stale["video_id"], days=3)
    sweep_once(get_settings())
    assert storage.size(incoming_key_for(stale["video_id"])) is None
    assert storage.size(incoming_key_for(fresh["video_id"])) is not None
    with unit_of_work() as session:
        assert session.get(UploadSession, stale["video_id"]) is None
        assert session.get(UploadSession, fresh["video_id"]) is not None


def _scratch(tmp_dir: Path, name: str, *, old: bool, is_dir: bool) -> Path:
    path = tmp_dir / name
    if is_dir:
        path.mkdir(parents=True)
        (path / "frame.png").write_bytes(b"x")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    if old:
        os.utime(path, (OLD, OLD))
    return path


def test_stale_scratch_files_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    stale = [
        _scratch(tmp_path, "job-killed", old=True, is_dir=True),
        _scratch(tmp_path, "upload-dropped.part", old=True, is_dir=False),
    ]
    kept = [
        _scratch(tmp_path, "job-running", old=False, is_dir=True),
        _scratch(tmp_path, "upload-streaming.part", old=False, is_dir=False),
        _scratch(tmp_path, "anb.db", old=True, is_dir=False),  # not scratch
    ]
    assert sweep_scratch(tmp_path, older_than_seconds=3600) == 2
    assert [path.exists() for path in stale] == [False, False]
    assert [path.exists() for path in kept] == [True, True, True]


def test_anb_serve_sweeps_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    left = _scratch(data_dir / "tmp", "job-killed", old=True, is_dir=True)
    port = free_port()
    env = server_env(data_dir, ANB_JWT_SECRET="sweep-" + "x" * 32)
    with served(anb_serve_command(port), env, port, tmp_path / "serve.log", stop=signal.SIGINT):
        deadline = time.monotonic() + 10
        while left.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not left.exists()
