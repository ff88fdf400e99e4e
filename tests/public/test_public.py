import concurrent.futures

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from anb.core.db import unit_of_work
from anb.users.models import User
from tests.clips import Clips
from tests.support.api import Player, download, signup, upload, upload_public

PUBLIC_KEYS = {
    "video_id", "title", "username", "city", "country", "processed_url", "thumbnail_url", "votes",
    "processed_at", "voted",
}  # fmt: skip


def test_only_processed_videos_are_public(client: TestClient, player: Player, clips: Clips) -> None:
    public_id = upload_public(client, player, clips.landscape, "Pública")
    assert upload(client, player, clips.landscape, "Pendiente").status_code == 201

    response = client.get("/api/public/videos")
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "1"
    [video] = response.json()
    assert set(video) == PUBLIC_KEYS
    assert video["video_id"] == public_id
    assert video["username"] == "Ana Pérez"
    assert (video["city"], video["country"]) == ("Bogotá", "Colombia")
    assert video["votes"] == 0 and video["voted"] is False
    assert video["processed_at"].endswith("Z")
    assert download(client, video["processed_url"]).status_code == 200


def test_city_and_country_filters_ignore_case_and_accents(client: TestClient, clips: Clips) -> None:
    bogota = signup(client, city="Bogotá", country="Colombia")
    medellin = signup(client, city="Medellín", country="Colombia")
    madrid = signup(client, city="Madrid", country="España")
    ids = {
        name: upload_public(client, who, clips.landscape, name)
        for name, who in (("b", bogota), ("m", medellin), ("s", madrid))
    }

    def listed(**params: str) -> set[str]:
        return {
            video["video_id"] for video in client.get("/api/public/videos", params=params).json()
        }

    assert listed(city="BOGOTA") == {ids["b"]}
    assert listed(city="  medellin ") == {ids["m"]}
    assert listed(country="espana") == {ids["s"]}
    assert listed(country="COLÓMBIA") == {ids["b"], ids["m"]}
    assert listed(city="bogotá", country="españa") == set()
    assert listed() == set(ids.values())


def test_public_list_pages_with_total_count(
    client: TestClient, player: Player, clips: Clips
) -> None:
    ids = [upload_public(client, player, clips.landscape, f"V{i}") for i in range(5)]
    first = client.get("/api/public/videos", params={"limit": 2})
    assert first.headers["X-Total-Count"] == "5"
    assert [video["video_id"] for video in first.json()] == ids[::-1][:2]
    last = client.get("/api/public/videos", params={"limit": 2, "offset": 4}).json()
    assert [video["video_id"] for video in last] == [ids[0]]
    assert client.get("/api/public/videos", params={"offset": 10}).json() == []


@pytest.mark.parametrize(
    ("params", "which"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "diez"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"city": "x" * 101}, "city"),
    ],
)
@pytest.mark.parametrize("path", ["/api/public/videos", "/api/public/rankings"])
def test_invalid_query_parameters_are_400(
    client: TestClient, path: str, params: dict, which: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400
    assert response.json()["detail"] == f"Parámetro inválido en la consulta: {which}"


def test_a_vote_counts_once_and_shows_at_once(
    client: TestClient, player: Player, clips: Clips
) -> None:
    video_id = upload_public(client, player, clips.landscape)
    voter = signup(client, email="fan@example.com")
    assert client.get("/api/public/rankings").json()[0]["votes"] == 0  # now cached

    response = client.post(f"/api/public/videos/{video_id}/vote", headers=voter.headers)
    assert response.status_code == 200
    assert response.json() == {"message": "Voto registrado exitosamente."}
    again = client.post(f"/api/public/videos/{video_id}/vote", headers=voter.headers)
    assert again.status_code == 400
    assert again.json() == {"detail": "Ya has votado por este video."}

    assert client.get("/api/public/rankings").json()[0]["votes"] == 1
    [listed] = client.get("/api/public/videos", headers=voter.headers).json()
    assert (listed["votes"], listed["voted"]) == (1, True)
    [anonymous] = client.get("/api/public/videos").json()
    assert anonymous["voted"] is False
    own = client.get(f"/api/videos/{video_id}", headers=player.headers).json()
    assert own["votes"] == 1


def test_voting_needs_a_public_video_and_a_token(
    client: TestClient, player: Player, clips: Clips
) -> None:
    pending = upload(client, player, clips.landscape).json()["video_id"]
    for video_id in (pending, "00000000-0000-0000-0000-000000000000"):
        response = client.post(f"/api/public/videos/{video_id}/vote", headers=player.headers)
        assert response.status_code == 404
        assert response.json() == {"detail": "Video no encontrado."}
    public = upload_public(client, player, clips.landscape)
    refused = client.post(f"/api/public/videos/{public}/vote")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"


def test_the_vote_of_a_deleted_account_is_401_and_not_counted(
    client: TestClient, player: Player, clips: Clips
) -> None:
    public = upload_public(client, player, clips.landscape)
    fan = signup(client)
    with unit_of_work() as session:
        session.execute(delete(User).where(User.id == fan.user_id))
    refused = client.post(f"/api/public/videos/{public}/vote", headers=fan.headers)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/public/videos").json()[0]["votes"] == 0
    listed = client.get("/api/public/videos", headers=fan.headers)
    assert listed.status_code == 401


def test_a_bad_token_on_the_public_list_is_401(client: TestClient) -> None:
    response = client.get("/api/public/videos", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


def test_sixteen_concurrent_duplicate_votes_count_once(live_server: str, clips: Clips) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        owner, voter = signup(http), signup(http, email="rafaga@example.com")
        video_id = upload_public(http, owner, clips.landscape)

        def cast(_: int) -> int:
            url = f"/api/public/videos/{video_id}/vote"
            return http.post(url, headers=voter.headers).status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(cast, range(16)))
        assert sorted(codes) == [200] + [400] * 15
        [video] = http.get("/api/public/videos").json()
        assert video["votes"] == 1


def _vote(client: TestClient, video_id: str, voters: list[Player]) -> None:
    for voter in voters:
        response = client.post(f"/api/public/videos/{video_id}/vote", headers=voter.headers)
        assert response.status_code == 200


def test_rankings_share_positions_on_ties_and_page_from_the_top(
    client: TestClient, clips: Clips
) -> None:
    players = {
        name: signup(client, first_name=name, last_name="Test", city=city)
        for name, city in (
            ("A", "Cali"),
            ("B", "Cali"),
            ("C", "Bogotá"),
            ("D", "Cali"),
            ("E", "Cali"),
        )
    }
    videos = {name: upload_public(client, who, clips.landscape) for name, who in players.items()}
    extra = upload_public(client, players["A"], clips.landscape)  # votes add up per player
    voters = [signup(client, email=f"v{i}@example.com") for i in range(3)]
    _vote(client, videos["A"], voters[:2])
    _vote(client, extra, voters[:1])
    _vote(client, videos["B"], voters[:2])
    _vote(client, videos["C"], voters[:2])
    _vote(client, videos["D"], voters[:1])

    ranking = client.get("/api/public/rankings").json()
    assert [(r["position"], r["username"], r["votes"]) for r in ranking] == [
        (1, "A Test", 3), (2, "B Test", 2), (2, "C Test", 2), (4, "D Test", 1), (5, "E Test", 0),
    ]  # fmt: skip
    assert all(set(entry) == {"position", "username", "city", "votes"} for entry in ranking)
    page = client.get("/api/public/rankings", params={"limit": 2, "offset": 2}).json()
    assert [(r["position"], r["username"]) for r in page] == [(2, "C Test"), (4, "D Test")]
    cali = client.get("/api/public/rankings", params={"city": "CALI"}).json()
    assert [(r["position"], r["username"]) for r in cali] == [
        (1, "A Test"), (2, "B Test"), (3, "D Test"), (4, "E Test"),
    ]  # fmt: skip
    assert client.get("/api/public/rankings", params={"city": "bogota"}).json() == [
        {"position": 1, "username": "C Test", "city": "Bogotá", "votes": 2}
    ]


def test_players_without_public_videos_are_not_ranked(
    client: TestClient, player: Player, clips: Clips
) -> None:
    assert upload(client, player, clips.landscape).status_code == 201
    assert client.get("/api/public/rankings").json() == []


def test_rankings_default_to_ten_entries(client: TestClient, clips: Clips) -> None:
    for index in range(12):
        upload_public(client, signup(client, first_name=f"J{index:02d}"), clips.landscape)
    assert len(client.get("/api/public/rankings").json()) == 10
    assert len(client.get("/api/public/rankings", params={"limit": 100}).json()) == 12


def test_pages_at_hand_answer_as_the_api_does(client: TestClient, clips: Clips) -> None:
    star = signup(client, city="Medellín")
    upload_public(client, star, clips.landscape)
    for path, params in [
        ("/api/public/videos", {}),
        ("/api/public/videos", {"city": "MEDELLIN", "limit": "5", "offset": "0"}),
        ("/api/public/rankings", {"country": "colombia"}),
    ]:
        routed, at_hand = (client.get(path, params=params) for _ in range(2))
        assert at_hand.status_code == routed.status_code == 200
        assert at_hand.json() == routed.json() and at_hand.json()
        for header in (
            "content-type",
            "x-total-count",
            "content-security-policy",
            "x-frame-options",
        ):
            assert at_hand.headers.get(header) == routed.headers.get(header), header
    # rankings are the same for every caller: a token, even a bad one, changes nothing
    expected = client.get("/api/public/rankings").json()
    for headers in ({}, {"Authorization": "Bearer nope"}, star.headers):
        ranked = client.get("/api/public/rankings", headers=headers)
        assert ranked.status_code == 200 and ranked.json() == expected and expected, headers
    for bad in ("limit=0", "limit=abc", "offset=-1", "limit=%D9%A3", "city=" + "x" * 101):
        for _ in range(2):  # the second time too, when the page could be at hand
            assert client.get(f"/api/public/videos?{bad}").status_code == 400, bad
