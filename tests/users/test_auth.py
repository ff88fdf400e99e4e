import time

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from anb.core.db import unit_of_work
from anb.users.models import User
from tests.support.api import PASSWORD, Player, signup

SIGNUP = {
    "first_name": "Luis",
    "last_name": "Díaz",
    "email": "Luis.Diaz@Example.com",
    "password1": PASSWORD,
    "password2": PASSWORD,
    "city": "Barranquilla",
    "country": "Colombia",
}


def test_signup_creates_a_user_with_a_lowercased_email(client: TestClient) -> None:
    response = client.post("/api/auth/signup", json=SIGNUP)
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Usuario creado exitosamente."
    assert body["user_id"]
    with unit_of_work() as session:
        user = session.get(User, body["user_id"])
        assert user.email == "luis.diaz@example.com"
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


def test_duplicate_email_ignoring_case_is_400_naming_the_email(client: TestClient) -> None:
    assert client.post("/api/auth/signup", json=SIGNUP).status_code == 201
    again = client.post("/api/auth/signup", json={**SIGNUP, "email": "LUIS.DIAZ@example.COM"})
    assert again.status_code == 400
    assert "luis.diaz@example.com" in again.json()["detail"]


def test_passwords_that_differ_are_400(client: TestClient) -> None:
    response = client.post("/api/auth/signup", json={**SIGNUP, "password2": PASSWORD + "x"})
    assert response.status_code == 400
    assert "password2" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"first_name": "   "}, "first_name"),
        ({"last_name": ""}, "last_name"),
        ({"city": " "}, "city"),
        ({"country": None}, "country"),
        ({"email": "not-an-email"}, "email"),
        ({"password1": "short", "password2": "short"}, "password1"),
        ({"password1": "        ", "password2": "        "}, "password1"),
        ({"first_name": 12}, "first_name"),
    ],
)
def test_invalid_signup_fields_are_400_naming_the_field(
    client: TestClient, change: dict, field: str
) -> None:
    response = client.post("/api/auth/signup", json={**SIGNUP, **change})
    assert response.status_code == 400
    body = response.json()
    assert body["detail"].startswith(f"{field}:")
    assert body["errors"][0]["field"] == field


def test_a_missing_field_is_400_not_422(client: TestClient) -> None:
    data = {key: value for key, value in SIGNUP.items() if key != "city"}
    response = client.post("/api/auth/signup", json=data)
    assert response.status_code == 400
    assert response.json()["detail"] == "city: campo requerido"


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/auth/signup", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_login_returns_a_bearer_token(client: TestClient) -> None:
    client.post("/api/auth/signup", json=SIGNUP)
    response = client.post(
        "/api/auth/login", json={"email": " LUIS.diaz@example.com ", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize(
    "credentials",
    [
        {"email": "luis.diaz@example.com", "password": "wrong-password"},
        {"email": "nobody@example.com", "password": PASSWORD},
    ],
)
def test_bad_credentials_get_one_and_the_same_401(client: TestClient, credentials: dict) -> None:
    client.post("/api/auth/signup", json=SIGNUP)
    response = client.post("/api/auth/login", json=credentials)
    assert response.status_code == 401
    assert response.json() == {"detail": "Credenciales inválidas."}


def test_login_without_password_is_400(client: TestClient) -> None:
    response = client.post("/api/auth/login", json={"email": "a@example.com"})
    assert response.status_code == 400
    assert response.json()["detail"] == "password: campo requerido"


def _token(player: Player) -> str:
    return player.headers["Authorization"].removeprefix("Bearer ")


def _assert_refused(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/api/videos", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"]


def test_no_token_or_a_malformed_header_is_401(client: TestClient) -> None:
    _assert_refused(client, {})
    _assert_refused(client, {"Authorization": "Basic dXNlcjpwYXNz"})
    _assert_refused(client, {"Authorization": "Bearer not.a.jwt"})
    _assert_refused(client, {"Authorization": "Bearer"})


def test_tampered_token_is_401(client: TestClient, player: Player) -> None:
    header, _, signature = _token(player).split(".")
    claims = jwt.decode(_token(player), options={"verify_signature": False})
    forged = jwt.encode({**claims, "sub": "someone-else"}, "guess-" + "z" * 32, algorithm="HS256")
    tampered = f"{header}.{forged.split('.')[1]}.{signature}"
    _assert_refused(client, {"Authorization": f"Bearer {tampered}"})


def test_expired_token_is_401(client: TestClient, player: Player) -> None:
    claims = jwt.decode(_token(player), options={"verify_signature": False})
    past = int(time.time()) - 7200
    expired = jwt.encode(
        {**claims, "iat": past, "exp": past + 60}, "test-secret-" + "x" * 32, algorithm="HS256"
    )
    _assert_refused(client, {"Authorization": f"Bearer {expired}"})


def test_alg_none_token_is_401(client: TestClient, player: Player) -> None:
    claims = jwt.decode(_token(player), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    _assert_refused(client, {"Authorization": f"Bearer {unsigned}"})


def test_token_signed_with_another_secret_is_401(client: TestClient, player: Player) -> None:
    claims = jwt.decode(_token(player), options={"verify_signature": False})
    other = jwt.encode(claims, "another-secret-" + "y" * 32, algorithm="HS256")
    _assert_refused(client, {"Authorization": f"Bearer {other}"})


def test_a_deleted_users_token_is_401(client: TestClient, player: Player) -> None:
    assert client.get("/api/videos", headers=player.headers).status_code == 200
    with unit_of_work() as session:
        session.execute(delete(User).where(User.id == player.user_id))
    _assert_refused(client, player.headers)


def test_concurrent_signups_with_one_email_create_one_user(live_server: str) -> None:
    import concurrent.futures

    import httpx

    data = {**SIGNUP, "email": "race@example.com"}
    with (
        httpx.Client(base_url=live_server, timeout=30) as http,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        codes = list(
            pool.map(lambda _: http.post("/api/auth/signup", json=data).status_code, range(8))
        )
    assert sorted(codes) == [201] + [400] * 7


def test_signup_helper_players_can_sign_in(client: TestClient) -> None:
    other = signup(client, email="second@example.com")
    assert client.get("/api/videos", headers=other.headers).json() == []


def _signup_as(client: TestClient, email: str):
    return client.post("/api/auth/signup", json={**SIGNUP, "email": email})


def _login_as(client: TestClient, email: str) -> int:
    return client.post("/api/auth/login", json={"email": email, "password": PASSWORD}).status_code


@pytest.mark.parametrize(
    ("signed_up_as", "logs_in_as"),
    [
        ("ka\u0301te@example.com", "k\u00e1te@example.com"),  # decomposed / composed accent
        ("k\u00e1te@example.com", "ka\u0301te@example.com"),
        ("kate@xn--bcher-kva.example", "Kate@B\u00fccher.example"),  # IDNA / Unicode domain
        ("kate@b\u00fccher.example", "kate@xn--bcher-kva.example"),
        ("\uff4b\uff41\uff54\uff45@example.com", "KATE@example.com"),  # full-width letters
    ],
)
def test_signup_and_login_share_one_normalisation(
    client: TestClient, signed_up_as: str, logs_in_as: str
) -> None:
    assert _signup_as(client, signed_up_as).status_code == 201
    assert _login_as(client, signed_up_as) == 200
    assert _login_as(client, logs_in_as) == 200
    again = _signup_as(client, logs_in_as)  # the same address, written another way
    assert again.status_code == 400 and "ya está registrado" in again.json()["detail"]


def test_a_local_part_mixing_latin_with_cyrillic_or_greek_is_refused(client: TestClient) -> None:
    for look_alike in ("p\u0430ypal@example.com", "\u03bfscar@example.com"):  # Cyrillic a, Greek o
        refused = _signup_as(client, look_alike)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["field"] == "email"
        assert "cirílicas o griegas" in refused.json()["detail"]
    for one_script in (
        "\u0438\u0432\u0430\u043d@example.com",
        "\u5c71\u7530\u305f\u308d\u3046@example.jp",
    ):
        assert _signup_as(client, one_script).status_code == 201, one_script
