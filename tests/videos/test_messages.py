"""Upload refusals name the field a player has to use."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from anb.core.multipart import IGNORED_PARTS_MAX_BYTES
from tests.support.api import Player

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


@pytest.mark.parametrize("size", [1024, IGNORED_PARTS_MAX_BYTES + 1024])
def test_a_video_under_another_field_name_is_told_to_use_video_file(
    client: TestClient, player: Player, size: int
) -> None:
    """A small file under `file` leaves `video_file` missing; a real video under `file` is
    cut short as an unexpected file: both answers name `video_file`."""
    response = client.post(
        "/api/videos/upload",
        headers=player.headers,
        files={"file": ("jugada.mp4", b"\0" * size, "video/mp4")},
        data={"title": "Campo equivocado"},
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("video_file: ")
    assert "en el campo video_file" in detail
