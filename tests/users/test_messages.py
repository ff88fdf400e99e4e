"""Validation messages speak the players' language (Spanish), whatever pydantic says."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.users.test_auth import SIGNUP

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def test_a_short_password_is_refused_in_spanish(client: TestClient) -> None:
    response = client.post("/api/auth/signup", json={**SIGNUP, "password1": "corta"})
    assert response.status_code == 400
    assert response.json()["detail"] == "password1: debe tener al menos 8 caracteres"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"email": "sin-arroba"}, "email: no es una dirección de correo electrónico válida"),
        ({"city": "   "}, "city: no puede estar vacío"),
        ({"first_name": "x" * 101}, "first_name: debe tener como máximo 100 caracteres"),
        ({"first_name": 12}, "first_name: debe ser un texto"),
        ({"last_name": "Nul\x00"}, "last_name: contiene caracteres no permitidos"),
    ],
)
def test_signup_fields_are_refused_in_spanish(
    client: TestClient, change: dict, detail: str
) -> None:
    response = client.post("/api/auth/signup", json={**SIGNUP, **change})
    assert response.status_code == 400
    assert response.json()["detail"] == detail


def test_a_body_that_is_not_an_object_is_refused_in_spanish(client: TestClient) -> None:
    response = client.post("/api/auth/login", json=["correo", "clave"])
    assert response.status_code == 400
    assert response.json() == {
        "detail": "body: debe ser un objeto JSON",
        "errors": [{"location": "body", "field": "body", "message": "debe ser un objeto JSON"}],
    }
