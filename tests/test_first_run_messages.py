"""pydantic's validation errors, mapped to Spanish in one place (core/handlers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from anb.core.handlers import INVALID_VALUE, install_error_handlers


def _answer_to(error: dict[str, Any]) -> dict[str, Any]:
    """The API's 400 for a request refused with `error` (one of pydantic's error dicts)."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/refused")
    def refused() -> None:
        raise RequestValidationError([error])

    response = TestClient(app).get("/refused")
    assert response.status_code == 400
    return response.json()


def test_an_error_type_without_translation_gets_a_spanish_fallback() -> None:
    error = {"type": "brand_new_type", "loc": ("body", "city"), "msg": "Something in English"}
    assert _answer_to(error) == {
        "detail": f"city: {INVALID_VALUE}",
        "errors": [{"location": "body", "field": "city", "message": INVALID_VALUE}],
    }


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ({"type": "missing"}, "campo requerido"),
        ({"type": "extra_forbidden"}, "campo no permitido"),
        ({"type": "int_parsing"}, "debe ser un número entero"),
        ({"type": "float_parsing"}, "debe ser un número"),
        ({"type": "greater_than", "ctx": {"gt": 0}}, "debe ser mayor que 0"),
        ({"type": "less_than_equal", "ctx": {"le": 100}}, "debe ser menor o igual que 100"),
        ({"type": "string_too_long", "ctx": {"max_length": 200}}, "debe tener como máximo 200"),
        (
            {"type": "literal_error", "ctx": {"expected": "'uploaded', 'failed' or 'processed'"}},
            "debe ser uno de estos valores: 'uploaded', 'failed' o 'processed'",
        ),
        (
            {"type": "enum", "ctx": {"expected": "'a' or 'b'"}},
            "debe ser uno de estos valores: 'a' o 'b'",
        ),
        ({"type": "model_attributes_type"}, "debe ser un objeto JSON"),
        ({"type": "value_error", "ctx": {"error": ValueError("no coinciden")}}, "no coinciden"),
        ({"type": "string_too_short"}, INVALID_VALUE),  # a context without its values
    ],
)
def test_pydantic_error_types_read_in_spanish(error: dict[str, Any], message: str) -> None:
    answer = _answer_to({"loc": ("body", "campo"), "msg": "in English", **error})
    assert answer["errors"][0]["message"].startswith(message)


def test_a_query_parameter_keeps_the_contracts_detail() -> None:
    answer = _answer_to({"type": "int_parsing", "loc": ("query", "limit"), "msg": "English"})
    assert answer["detail"] == "Parámetro inválido en la consulta: limit"
    assert answer["errors"][0]["message"] == "debe ser un número entero"


def test_malformed_json_names_the_body() -> None:
    error = {"type": "json_invalid", "loc": ("body", 7), "msg": "JSON decode error"}
    assert _answer_to(error)["detail"] == "body: el JSON no es válido"
