from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from anb.core.db import unit_of_work
from anb.storage import get_storage
from anb.videos.models import Video, VideoStatus
from tests.clips import Clips
from tests.support.api import Player, download, signup, upload
from tests.support.backend import local_only, publish

SUMMARY_KEYS = {
    "video_id",
    "title",
    "status",
    "uploaded_at",
    "processed_at",
    "processed_url",
    "thumbnail_url",
    "votes",
}


def _upload_id(client: TestClient, player: Player, clips: Clips, title: str) -> str:
    response = upload(client, player, clips.landscape, title)
    assert response.status_code == 201
    return response.json()["video_id"]


def test_my_videos_newest_first_with_the_contract_fields(
    client: TestClient, player: Player, clips: Clips
) -> None:
    first = _upload_id(client, player, clips, "Primero")
    second = _upload_id(client, player, clips, "Segundo")
    signup_other = signup(client, email="otro@example.com")
    _upload_id(client, signup_other, clips, "Ajeno")

    response = client.get("/api/videos", headers=player.headers)
    assert response.status_code == 200
    videos = response.json()
    assert [video["video_id"] for video in videos] == [second, first]
    assert set(videos[0]) == SUMMARY_KEYS
    assert videos[0]["status"] == "uploaded"
    assert videos[0]["processed_at"] is None and videos[0]["processed_url"] is None
    assert videos[0]["thumbnail_url"] is None
    assert videos[0]["votes"] == 0
    assert videos[0]["uploaded_at"].endswith("Z")


def test_a_failed_video_carries_its_error(client: TestClient, player: Player, clips: Clips) -> None:
    video_id = _upload_id(client, player, clips, "Falla")
    with unit_of_work() as session:
        video = session.get(Video, video_id)
        video.status, video.error = VideoStatus.failed, "El video no se pudo leer."
    [listed] = client.get("/api/videos", headers=player.headers).json()
    assert listed["status"] == "failed"
    assert listed["error"] == "El video no se pudo leer."
    detail = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
    assert detail["error"] == "El video no se pudo leer."


def test_one_video_with_working_signed_urls(
    client: TestClient, player: Player, clips: Clips
) -> None:
    video_id = _upload_id(client, player, clips, "Detalle")
    response = client.get(f"/api/videos/{video_id}", headers=player.headers)
    assert response.status_code == 200
    video = response.json()
    assert set(video) == SUMMARY_KEYS | {"original_url"}
    assert video["processed_url"] is None and video["thumbnail_url"] is None
    url = video["original_url"]
    assert url.startswith("http://") and video_id in url
    assert parse_qs(urlsplit(url).query)  # signed and expiring
    downloaded = download(client, url)
    assert downloaded.status_code == 200
    assert downloaded.content == clips.landscape.read_bytes()

    publish(video_id)
    processed = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
    assert processed["status"] == "processed"
    assert processed["processed_at"].endswith("Z")
    assert download(client, processed["processed_url"]).status_code == 200


def test_file_urls_support_ranges_for_players(
    client: TestClient, player: Player, clips: Clips
) -> None:
    url = _uploaded_original_url(client, player, clips, "Rango")
    partial = download(client, url, headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206
    assert partial.content == clips.landscape.read_bytes()[:100]


def test_file_urls_answer_head_as_players_probe_them(
    client: TestClient, player: Player, clips: Clips
) -> None:
    """Players and download managers ask HEAD first (size, ranges)."""
    local_only("the API serves these URLs itself")
    url = _uploaded_original_url(client, player, clips, "Cabecera")
    head = client.head(url)
    assert head.status_code == 200, head.text
    assert int(head.headers["content-length"]) == clips.landscape.stat().st_size
    assert head.content == b""


def test_file_urls_use_the_public_base_url_not_the_host_header(
    client: TestClient, player: Player, clips: Clips, configure
) -> None:
    """A client-written Host header must not end up in the links the API hands out (a
    poisoned cached page would send every visitor elsewhere)."""
    local_only("the API's own file URLs carry its base URL")
    forged = {"Host": "attacker.example", **player.headers}
    video_id = _upload_id(client, player, clips, "Anfitrion")
    url = _original_url(client, forged, video_id)
    assert url.startswith("http://attacker.example/api/files/")  # unset: the request's host

    configure(ANB_PUBLIC_BASE_URL="https://anb.example.com")
    url = _original_url(client, forged, video_id)
    assert url.startswith("https://anb.example.com/api/files/"), url
    grant = client.post(
        "/api/videos/uploads", headers=forged, json={"title": "Directo", "size": 1000}
    ).json()
    assert grant["upload_url"].startswith("https://anb.example.com/api/"), grant


def test_tampered_or_expired_file_urls_are_refused(
    client: TestClient, player: Player, clips: Clips
) -> None:
    local_only("S3 checks its own presigned URLs")
    video_id = _upload_id(client, player, clips, "Firma")
    url = _original_url(client, player.headers, video_id)
    query = parse_qs(urlsplit(url).query)
    path = urlsplit(url).path
    expires, signature = query["expires"][0], query["signature"][0]
    assert (
        client.get(f"{path}?expires={int(expires) + 10}&signature={signature}").status_code == 403
    )
    assert client.get(f"{path}?expires={expires}&signature={'0' * 64}").status_code == 403
    assert client.get(f"{path}?expires=1&signature={signature}").status_code == 403
    other_path = path.replace("original.mp4", "processed.mp4")
    assert client.get(f"{other_path}?expires={expires}&signature={signature}").status_code == 403
    assert client.get(path).status_code == 400


def test_path_traversal_in_a_file_url_finds_nothing(client: TestClient) -> None:
    local_only("S3 keys are not paths")
    from anb.storage import get_storage

    url = get_storage().url("../jwt-secret", expires_in=60, base_url="http://testserver/")
    assert client.get(url.replace("..", "%2E%2E")).status_code == 404


def test_another_players_video_is_403_and_an_unknown_one_404(
    client: TestClient, player: Player, clips: Clips
) -> None:
    video_id = _upload_id(client, player, clips, "Privado")
    intruder = signup(client, email="intruso@example.com")
    forbidden = client.get(f"/api/videos/{video_id}", headers=intruder.headers)
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"]
    missing = client.get("/api/videos/00000000-0000-0000-0000-000000000000", headers=player.headers)
    assert missing.status_code == 404
    assert client.get(f"/api/videos/{video_id}").status_code == 401


def test_deleting_removes_record_files_and_urls(
    client: TestClient, player: Player, clips: Clips
) -> None:
    video_id = _upload_id(client, player, clips, "Borrar")
    url = _original_url(client, player.headers, video_id)
    response = client.delete(f"/api/videos/{video_id}", headers=player.headers)
    assert response.status_code == 200
    assert response.json() == {
        "message": "El video ha sido eliminado exitosamente.",
        "video_id": video_id,
    }
    assert download(client, url).status_code == 404
    assert client.get(f"/api/videos/{video_id}", headers=player.headers).status_code == 404
    assert get_storage().keys("") == []
    assert client.get("/api/videos", headers=player.headers).json() == []
    assert client.delete(f"/api/videos/{video_id}", headers=player.headers).status_code == 404


def test_a_published_video_cannot_be_deleted(
    client: TestClient, player: Player, clips: Clips
) -> None:
    video_id = _upload_id(client, player, clips, "Publicado")
    publish(video_id)
    response = client.delete(f"/api/videos/{video_id}", headers=player.headers)
    assert response.status_code == 400
    assert "publicado" in response.json()["detail"]
    assert client.get(f"/api/videos/{video_id}", headers=player.headers).status_code == 200


def test_failed_and_processing_videos_can_be_deleted(
    client: TestClient, player: Player, clips: Clips
) -> None:
    for status in (VideoStatus.failed, VideoStatus.processing):
        video_id = _upload_id(client, player, clips, status.value)
        with unit_of_work() as session:
            session.get(Video, video_id).status = status
        assert client.delete(f"/api/videos/{video_id}", headers=player.headers).status_code == 200


def test_only_the_owner_deletes(client: TestClient, player: Player, clips: Clips) -> None:
    video_id = _upload_id(client, player, clips, "Mío")
    intruder = signup(client, email="ladron@example.com")
    assert client.delete(f"/api/videos/{video_id}", headers=intruder.headers).status_code == 403
    assert client.delete(f"/api/videos/{video_id}").status_code == 401
    assert client.get(f"/api/videos/{video_id}", headers=player.headers).status_code == 200


def _original_url(client: TestClient, headers: dict[str, str], video_id: str) -> str:
    return client.get(f"/api/videos/{video_id}", headers=headers).json()["original_url"]


def _uploaded_original_url(client: TestClient, player: Player, clips: Clips, title: str) -> str:
    return _original_url(client, player.headers, _upload_id(client, player, clips, title))
