"""Players and their videos over a client of the API (TestClient or httpx)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.support.backend import publish

PASSWORD = "s3guro-y-largo"


@dataclass
class Player:
    user_id: str
    email: str
    headers: dict[str, str]


def signup(client: TestClient | httpx.Client, **fields: str) -> Player:
    data = {
        "first_name": "Ana",
        "last_name": "Pérez",
        "email": f"{uuid.uuid4().hex[:10]}@example.com",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "city": "Bogotá",
        "country": "Colombia",
        **fields,
    }
    created = client.post("/api/auth/signup", json=data)
    assert created.status_code == 201, created.text
    login = client.post("/api/auth/login", json={"email": data["email"], "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    return Player(created.json()["user_id"], data["email"], {"Authorization": f"Bearer {token}"})


def upload(
    client: TestClient | httpx.Client, player: Player, path: Path, title: str = "Mi jugada"
) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post(
            "/api/videos/upload",
            headers=player.headers,
            files={"video_file": (path.name, handle, "video/mp4")},
            data={"title": title},
        )


def upload_public(client: TestClient, player: Player, path: Path, title: str = "Jugada") -> str:
    response = upload(client, player, path, title)
    assert response.status_code == 201, response.text
    video_id = response.json()["video_id"]
    publish(video_id)
    return video_id


def download(client: TestClient, url: str, **options) -> httpx.Response:
    """GET a file URL: the API's own (embedded) or a presigned S3 URL."""
    if url.startswith(str(client.base_url)):
        return client.get(url, **options)
    return httpx.get(url, timeout=30, **options)
