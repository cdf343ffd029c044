"""What the OpenAPI document declares of conditional requests and of an unreachable database
(spec/client-contract.md: every header and status the service can send is declared): a
campaign signup's reads and actions, like every versioned entity's, declare `ETag`, 304,
`If-Match` and 412; a creation under an entity's path declares `If-Match` only where it checks
it; every operation that touches the database declares 503 with `Retry-After`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_campaigns import ACTIONS

SIGNUP = "/v1/campaign-signups/{signup_id}"
SIGNUP_ACTIONS = tuple(ACTIONS)  # the signup's action paths


@pytest.fixture(scope="module")
def doc(application) -> dict[str, Any]:
    return application.openapi()


def _headers(operation: dict[str, Any]) -> set[str]:
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}


def test_a_campaign_signup_declares_its_conditional_requests(doc):
    read = doc["paths"][SIGNUP]["get"]
    assert "If-None-Match" in _headers(read)
    assert "ETag" in read["responses"]["200"]["headers"]
    assert read["responses"]["304"]["headers"]["ETag"] == {"$ref": "#/components/headers/ETag"}
    for action in SIGNUP_ACTIONS:
        operation = doc["paths"][f"{SIGNUP}/{action}"]["post"]
        assert "If-Match" in _headers(operation), action
        assert "ETag" in operation["responses"]["200"]["headers"], action
        assert operation["responses"]["412"]["content"]["application/problem+json"], action
    create = doc["paths"]["/v1/campaigns/{campaign_id}/signups"]["post"]
    assert "ETag" in create["responses"]["201"]["headers"]
    # the signup's creation does not check the campaign's version: it declares no If-Match
    assert "If-Match" not in _headers(create) and "412" not in create["responses"]


@pytest.mark.parametrize("path", ["/v1/task-orders/{order_id}/disputes", "/v1/vouchers/{voucher_id}/redemptions"])
def test_a_creation_that_checks_its_parents_version_declares_if_match(doc, path):
    operation = doc["paths"][path]["post"]
    assert "If-Match" in _headers(operation) and "412" in operation["responses"]
    assert "ETag" in operation["responses"]["201"]["headers"]


def test_every_operation_on_the_database_declares_503_with_retry_after(doc):
    without = set()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            unavailable = operation["responses"].get("503")
            if unavailable is None:
                without.add(operation["operationId"])
                continue
            assert unavailable["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}, (
                f"{method} {path}"
            )
            assert unavailable["headers"]["Retry-After"] == {"$ref": "#/components/headers/RetryAfter"}, f"{method} {path}"
            assert "Content-Language" in unavailable["headers"], f"{method} {path}"
    assert without == {"healthz", "metrics"}  # the process alone answers them
    for path, method in (
        ("/v1/task-orders/{order_id}/accept", "post"),
        ("/v1/events/stream", "get"),
        ("/v1/auth/token", "post"),
        ("/readyz", "get"),
    ):
        assert "503" in doc["paths"][path][method]["responses"], f"{method} {path}"
