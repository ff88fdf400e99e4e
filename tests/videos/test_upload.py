import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from anb.api import create_app
from anb.core.db import unit_of_work
from anb.core.settings import get_settings
from anb.storage import get_storage
from anb.videos.models import Video, VideoStatus
from tests.clips import Clips
from tests.support.api import Player, upload
from tests.support.backend import local_only, pending_jobs


def test_a_1080p_21s_mp4_is_accepted_stored_and_enqueued(
    client: TestClient, player: Player, clips: Clips
) -> None:
    response = upload(client, player, clips.landscape, title="  Triple desde la esquina ")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message"] == "Video subido correctamente. Procesamiento en curso."
    uuid.UUID(body["video_id"])
    uuid.UUID(body["task_id"])
    with unit_of_work() as session:
        video = session.get(Video, body["video_id"])
        assert video.status == VideoStatus.uploaded
        assert video.title == "Triple desde la esquina"
        assert video.owner_id == player.user_id
        assert video.original_bytes == clips.landscape.stat().st_size
        key = video.original_key
    assert get_storage().exists(key)
    assert clips.landscape.name not in key  # client file names never become storage paths
    assert pending_jobs() == [{"video_id": body["video_id"], "task_id": body["task_id"]}]


def test_portrait_1080x1920_is_accepted(client: TestClient, player: Player, clips: Clips) -> None:
    assert upload(client, player, clips.portrait).status_code == 201


@pytest.mark.parametrize(
    ("clip", "reason"),
    [
        ("text", "no es un video MP4"),
        ("matroska", "no es un video MP4"),
        ("truncated", "incompleto o dañado"),
        ("moov_at_end_truncated", "incompleto o dañado"),
        ("audio_only", "no contiene una pista de video"),
        ("short", "la duración debe estar entre 20 y 60 segundos"),
        ("long", "la duración debe estar entre 20 y 60 segundos"),
        ("low_res", "se requiere 1080p o más"),
        ("quicktime", "QuickTime (.mov), no MP4: expórtalo o conviértelo a MP4"),
        ("short_video_long_audio", "el video dura 19.5 s; la duración debe estar entre 20 y 60"),
    ],
)
def test_unacceptable_files_are_400_saying_why_and_leave_nothing_behind(
    client: TestClient, player: Player, clips: Clips, clip: str, reason: str
) -> None:
    response = upload(client, player, getattr(clips, clip))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("video_file: ")
    assert reason in response.json()["detail"]
    with unit_of_work() as session:
        assert session.query(Video).count() == 0
    assert pending_jobs() == []
    _assert_no_leftovers(client)


def _assert_no_leftovers(client: TestClient) -> None:
    from anb.core.settings import get_settings

    assert list(get_settings().tmp_dir.glob("*")) == []
    assert get_storage().keys("") == []


def test_the_type_is_judged_by_content_not_by_name(
    client: TestClient, player: Player, clips: Clips, tmp_path: Path
) -> None:
    renamed = tmp_path / "jugada.mov"
    renamed.write_bytes(clips.landscape.read_bytes())
    with renamed.open("rb") as handle:
        response = client.post(
            "/api/videos/upload",
            headers=player.headers,
            files={"video_file": ("jugada.txt", handle, "text/plain")},
            data={"title": "Nombre engañoso"},
        )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({}, "title: campo requerido"),
        ({"title": "   "}, "title: campo requerido"),
        ({"title": "x" * 201}, "title: máximo 200 caracteres"),
    ],
)
def test_title_is_required_and_bounded(
    client: TestClient, player: Player, clips: Clips, data: dict, detail: str
) -> None:
    with clips.landscape.open("rb") as handle:
        response = client.post(
            "/api/videos/upload",
            headers=player.headers,
            files={"video_file": ("a.mp4", handle, "video/mp4")},
            data=data,
        )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)
    _assert_no_leftovers(client)


def test_a_title_of_200_characters_is_accepted(
    client: TestClient, player: Player, clips: Clips
) -> None:
    assert upload(client, player, clips.landscape, title="á" * 200).status_code == 201


def test_a_wrong_file_field_name_is_400(client: TestClient, player: Player, clips: Clips) -> None:
    with clips.landscape.open("rb") as handle:
        response = client.post(
            "/api/videos/upload",
            headers=player.headers,
            files={"file": ("a.mp4", handle, "video/mp4")},
            data={"title": "Campo equivocado"},
        )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("video_file: campo requerido")


def test_a_json_body_is_400(client: TestClient, player: Player) -> None:
    response = client.post("/api/videos/upload", headers=player.headers, json={"title": "x"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["detail"]


def test_a_malformed_multipart_body_is_400(client: TestClient, player: Player) -> None:
    response = client.post(
        "/api/videos/upload",
        headers={**player.headers, "Content-Type": "multipart/form-data; boundary=xyz"},
        content=b'--xyz\r\nContent-Disposition: form-data; name="title"\r\n\r\nhola',
    )
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["detail"]
    _assert_no_leftovers(client)


def test_upload_without_a_token_is_401(client: TestClient, clips: Clips) -> None:
    with clips.landscape.open("rb") as handle:
        response = client.post(
            "/api/videos/upload",
            files={"video_file": ("a.mp4", handle, "video/mp4")},
            data={"title": "Sin token"},
        )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_file_over_the_size_limit_is_400(
    client: TestClient, player: Player, clips: Clips, configure
) -> None:
    configure(ANB_UPLOAD_MAX_BYTES=str(clips.landscape.stat().st_size - 1))
    response = upload(client, player, clips.landscape)
    assert response.status_code == 400
    assert "supera el tamaño máximo" in response.json()["detail"]
    _assert_no_leftovers(client)


def test_a_picture_over_the_configured_size_is_400_saying_so(
    client: TestClient, player: Player, clips: Clips, configure
) -> None:
    configure(ANB_UPLOAD_MAX_LONG_SIDE="1280")
    response = upload(client, player, clips.landscape)
    assert response.status_code == 400
    assert "el lado mayor puede medir a lo sumo 1280 px" in response.json()["detail"]
    _assert_no_leftovers(client)


class CountingBody:
    """An ASGI `receive` that serves a multipart upload of `total` bytes chunk by chunk and
    counts how many chunks the application pulled."""

    def __init__(
        self,
        headers: dict[str, str],
        total: int,
        chunk: int = 64 * 1024,
        *,
        fields: dict[str, str] | None = None,
        file_field: str = "video_file",
    ) -> None:
        self.boundary = "anbboundary"
        text_parts = "".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in (fields if fields is not None else {"title": "Grande"}).items()
        )
        self.head = (
            f"{text_parts}--{self.boundary}\r\nContent-Disposition: form-data; "
            f'name="{file_field}"; filename="big.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        ).encode()
        self.total, self.chunk, self.pulled = total, chunk, 0
        self.headers = headers

    async def receive(self) -> dict:
        self.pulled += 1
        if self.pulled == 1:
            return {"type": "http.request", "body": self.head, "more_body": True}
        sent = (self.pulled - 1) * self.chunk
        return {"type": "http.request", "body": b"\0" * self.chunk, "more_body": sent < self.total}


async def _call(
    app, body: CountingBody, declared_length: int | None, path: str = "/api/videos/upload"
) -> tuple[int, dict]:
    headers = [
        (b"content-type", f"multipart/form-data; boundary={body.boundary}".encode()),
        *[(name.lower().encode(), value.encode()) for name, value in body.headers.items()],
    ]
    if declared_length is not None:
        headers.append((b"content-length", str(declared_length).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, body.receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(payload)


@pytest.mark.anyio
@pytest.mark.parametrize("declare_length", [False, True])
async def test_reading_stops_once_the_limit_is_passed(
    configure, player: Player, declare_length: bool
) -> None:
    limit = 1024 * 1024
    configure(ANB_UPLOAD_MAX_BYTES=str(limit))
    body = CountingBody(player.headers, total=500 * 1024 * 1024)
    status, payload = await _call(create_app(), body, body.total if declare_length else None)
    assert status == 400
    assert "supera el tamaño máximo de 1 MB" in payload["detail"]
    expected_pulls = 1 if declare_length else limit // body.chunk + 2
    assert body.pulled <= expected_pulls  # 500 MB offered; at most the limit was read


@pytest.mark.anyio
async def test_a_forged_direct_upload_form_is_refused_before_its_file_is_stored(
    configure,
) -> None:
    """The embedded upload target judges the signed fields before the file's first byte:
    a forged 60 MB upload costs its first chunk, and nothing lands in the data dir."""
    local_only("the embedded storage's own upload target")
    forged = {"key": "incoming/x.mp4", "expires": "9999999999", "max_bytes": "99999999"}
    body = CountingBody(
        {}, total=60 * 1024 * 1024, fields={**forged, "signature": "0" * 64}, file_field="file"
    )
    status, payload = await _call(create_app(), body, None, path="/api/uploads")
    assert status == 403, payload
    assert "no es válido" in payload["detail"]
    assert body.pulled == 1  # the fields and the file part's headers; not one file chunk
    assert not [path for path in get_settings().data_dir.rglob("*.part")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({f"f{n}": "x" for n in range(40)}, "tiene más de 16 partes"),
        ({f"f{n}": "x" * 4000 for n in range(6)}, "sus campos de texto superan 16384 bytes"),
    ],
)
async def test_many_or_long_text_fields_are_refused_as_they_arrive(
    configure, player: Player, fields: dict[str, str], detail: str
) -> None:
    body = CountingBody(player.headers, total=1024 * 1024, fields=fields)
    status, payload = await _call(create_app(), body, None)
    assert status == 400, payload
    assert detail in payload["detail"]
    assert body.pulled == 1  # refused within the first chunk


@pytest.mark.anyio
async def test_bytes_after_the_closing_boundary_are_not_read(
    configure, player: Player, clips: Clips
) -> None:
    """Reading stops at the form's end: a client cannot keep the server reading junk."""
    body = CountingBody(player.headers, total=0)
    whole = body.head + clips.landscape.read_bytes() + f"\r\n--{body.boundary}--\r\n".encode()

    async def receive() -> dict:
        body.pulled += 1
        if body.pulled == 1:
            return {"type": "http.request", "body": whole, "more_body": True}
        return {"type": "http.request", "body": b"\0" * 65536, "more_body": body.pulled < 2000}

    body.receive = receive  # type: ignore[method-assign]
    status, payload = await _call(create_app(), body, None)
    assert status == 201, payload
    assert body.pulled <= 2  # 125 MB of epilogue offered
