"""Rate limits, security headers, CORS and body limits."""

from __future__ import annotations

from fastapi.testclient import TestClient

from anb.api import create_app
from tests.clips import Clips
from tests.support.api import PASSWORD, Player, signup, upload_public


def _fresh_client() -> TestClient:
    return TestClient(create_app(), base_url="http://testserver")


def test_login_attempts_are_limited_per_ip_and_email(client: TestClient, configure) -> None:
    configure(ANB_LOGIN_RATE_LIMIT="3/60")
    with _fresh_client() as limited:
        player = signup(limited)
        wrong = {"email": player.email, "password": "incorrecta"}
        codes = [limited.post("/api/auth/login", json=wrong).status_code for _ in range(2)]
        assert codes == [401, 401]  # with signup()'s login, three attempts so far
        refused = limited.post(
            "/api/auth/login", json={"email": player.email, "password": PASSWORD}
        )
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "Demasiados intentos" in refused.json()["detail"]
        other = signup(limited, email="otra@example.com")  # another email is not affected
        assert other.headers


def test_signups_are_limited_per_client_address(client: TestClient, configure) -> None:
    configure(ANB_SIGNUP_RATE_LIMIT="2/60")
    with _fresh_client() as limited:
        for _ in range(2):
            signup(limited)
        fields = {"first_name": "Eva", "last_name": "Gil", "city": "Cali", "country": "Colombia"}
        third = {**fields, "email": "tercera@example.com", "password1": PASSWORD}
        refused = limited.post("/api/auth/signup", json={**third, "password2": PASSWORD})
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "Demasiados registros" in refused.json()["detail"]
    configure(ANB_SIGNUP_RATE_LIMIT="off")
    with _fresh_client() as unlimited:
        assert all(signup(unlimited).user_id for _ in range(4))


def test_votes_are_limited_per_user(client: TestClient, clips: Clips, configure) -> None:
    configure(ANB_VOTE_RATE_LIMIT="2/60")
    with _fresh_client() as limited:
        owner, fan = signup(limited), signup(limited)
        videos = [upload_public(limited, owner, clips.landscape, f"V{i}") for i in range(3)]
        codes = [
            limited.post(f"/api/public/videos/{video}/vote", headers=fan.headers).status_code
            for video in videos
        ]
        assert codes == [200, 200, 429]
        [third] = [
            v for v in limited.get("/api/public/videos").json() if v["video_id"] == videos[2]
        ]
        assert third["votes"] == 0  # the refused vote was not counted


def test_limits_can_be_switched_off(client: TestClient, configure) -> None:
    configure(ANB_LOGIN_RATE_LIMIT="off")
    with _fresh_client() as unlimited:
        player = signup(unlimited)
        wrong = {"email": player.email, "password": "incorrecta"}
        assert {unlimited.post("/api/auth/login", json=wrong).status_code for _ in range(12)} == {
            401
        }


def test_security_headers_on_every_answer(client: TestClient, player: Player) -> None:
    for response in (
        client.get("/api/health"),
        client.get("/api/videos"),
        client.post("/api/auth/login", json={"email": "x@example.com", "password": "nope-nope"}),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert client.post("/api/auth/login", json={}).headers["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" not in client.get("/docs").headers  # Swagger UI works


def test_hsts_only_over_https_as_the_client_saw_it(configure) -> None:
    """Behind the ALB the API speaks HTTP; the balancer's X-Forwarded-Proto, believed from
    ANB_TRUSTED_PROXIES only, says whether the client used HTTPS."""
    configure(ANB_TRUSTED_PROXIES="127.0.0.1")
    with TestClient(create_app(), base_url="http://testserver", client=("127.0.0.1", 5000)) as api:
        assert "strict-transport-security" not in api.get("/health").headers
        https = api.get("/health", headers={"X-Forwarded-Proto": "https"})
        assert https.headers["strict-transport-security"] == "max-age=31536000"
    configure(ANB_TRUSTED_PROXIES="")
    with TestClient(create_app(), base_url="http://testserver") as api:  # no proxy believed
        forged = api.get("/health", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" not in forged.headers
    with TestClient(create_app(), base_url="https://testserver") as api:
        assert api.get("/health").headers["strict-transport-security"] == "max-age=31536000"


def test_cors_only_for_the_configured_origins(client: TestClient, configure) -> None:
    configure(ANB_CORS_ORIGINS="https://anb.example.com, https://admin.anb.example.com")
    with _fresh_client() as browser:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = browser.options(
            "/api/auth/login", headers={"Origin": "https://anb.example.com", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://anb.example.com"
        refused = browser.options(
            "/api/auth/login", headers={"Origin": "https://evil.example.com", **preflight}
        )
        assert "access-control-allow-origin" not in refused.headers
        listed = browser.get("/api/public/videos", headers={"Origin": "https://anb.example.com"})
        assert "X-Total-Count" in listed.headers["access-control-expose-headers"]


def test_no_cors_headers_without_configured_origins(client: TestClient) -> None:
    response = client.get("/api/public/videos", headers={"Origin": "https://anb.example.com"})
    assert "access-control-allow-origin" not in response.headers


def test_oversized_json_bodies_are_refused(client: TestClient) -> None:
    huge = {"email": "a@example.com", "password": "x" * 100_000}
    response = client.post("/api/auth/login", json=huge)
    assert response.status_code == 413
    assert response.json() == {"detail": "El cuerpo de la petición es demasiado grande."}


def test_an_oversized_chunked_json_body_is_413_too(client: TestClient) -> None:
    """No Content-Length to judge by: the body is counted as it streams, and the answer is
    413 whatever the endpoint made of the cut body."""

    def chunks():
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    response = client.post(
        "/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": "El cuerpo de la petición es demasiado grande."}


def test_errors_never_leak_internals(client: TestClient, configure) -> None:
    configure(ANB_DATABASE_URL="postgresql+pg8000://nobody@127.0.0.1:1/down")
    with _fresh_client() as broken:
        response = broken.get("/api/public/rankings")
    assert response.status_code == 503
    text = response.text.lower()
    assert "traceback" not in text and "select" not in text and "pg8000" not in text


def test_nul_characters_are_refused_not_sent_to_the_database(
    client: TestClient, player: Player
) -> None:
    """PostgreSQL cannot store NUL: found by schemathesis as a 500 on login."""
    assert (
        client.post("/api/auth/login", json={"email": "\u0000", "password": "x"}).status_code == 400
    )
    signup_body = {
        "first_name": "A\u0000", "last_name": "B", "email": "nul@example.com",
        "password1": PASSWORD, "password2": PASSWORD, "city": "C", "country": "D",
    }  # fmt: skip
    assert client.post("/api/auth/signup", json=signup_body).status_code == 400
    assert client.get("/api/public/videos", params={"city": "\x00"}).status_code == 400
    assert client.get("/api/public/rankings", params={"country": "\x00"}).status_code == 400
    assert client.get("/api/videos/%00", headers=player.headers).status_code == 400
    started = client.post(
        "/api/videos/uploads", headers=player.headers, json={"title": "a\u0000", "size": 10}
    )
    assert started.status_code == 400
