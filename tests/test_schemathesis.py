"""Property-based tests from the OpenAPI document: every operation, signed in, with a
bounded number of generated requests: no 5xx, and every answer matches the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from anb.api import create_app
from tests.support.api import Player, signup

# The app reads its settings per request: the fixtures below point it at each backend.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@pytest.fixture
def signed_in(client) -> Player:
    return signup(client)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_answers_match_the_schema(case, signed_in: Player) -> None:
    case.headers = {**(case.headers or {}), **signed_in.headers}
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance]
    )
