"""The OpenAPI document is the contract client teams generate from (spec/client-contract.md, "A
typed contract"): every header the service reads or writes and every status it answers is
declared where it occurs, the account is a union discriminated by `role`, no field whose shape
is known is an untyped bag, every request body has an example that fits it, creations link to
the entity's read and actions, and Redocly's recommended rules find no error."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import jsonschema_rs
import pytest

from app.domain.accounts import Role
from tests.conftest import IS_POSTGRES, Factory
from tests.node_tools import EXAMPLES, run, tools
from tests.test_task_orders_support import CANCEL, minute, order_body, ready_merchant

# the answers checked against the document come from the same code on every database
TRACKED = ("etag", "retry-after", "idempotent-replayed", "x-request-id", "content-language")


@pytest.fixture(scope="module")
def doc(application) -> dict[str, Any]:
    return application.openapi()


def _validator(doc: dict[str, Any], ref: str) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{ref}", "components": doc["components"]})


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return doc["paths"][path][method.lower()]


def _declared(doc: dict[str, Any], method: str, path: str, r: httpx.Response) -> None:
    """`r` is an answer the document declares: its status, and each header it carries."""
    responses = _operation(doc, method, path)["responses"]
    assert str(r.status_code) in responses, f"{method} {path}: {r.status_code} is not declared ({sorted(responses)})"
    declared = {name.lower() for name in responses[str(r.status_code)].get("headers", {})}
    sent = {name for name in TRACKED if name in r.headers}
    assert sent <= declared, f"{method} {path} {r.status_code}: headers {sorted(sent - declared)} are not declared"


def _parameters(doc: dict[str, Any], method: str, path: str) -> set[str]:
    return {p["name"] for p in _operation(doc, method, path).get("parameters", []) if p["in"] == "header"}


# ------------------------------------------------------------------ headers and statuses
def test_the_headers_the_service_reads_are_declared(doc):
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            names = _parameters(doc, method, path)
            assert {"Accept-Language", "X-Request-ID"} <= names, f"{method} {path}: {names}"
            if method == "post" and operation["security"]:
                assert "Idempotency-Key" in names, f"{method} {path}"
            for status, response in operation["responses"].items():
                assert "X-Request-ID" in response.get("headers", {}), f"{method} {path} {status}"
                if status[0] in "45":
                    assert "Content-Language" in response["headers"], f"{method} {path} {status}"
                if status == "429":
                    assert "Retry-After" in response["headers"], f"{method} {path} {status}"
    read = _operation(doc, "get", "/v1/task-orders/{order_id}")
    assert "If-None-Match" in _parameters(doc, "get", "/v1/task-orders/{order_id}")
    assert {"ETag"} <= set(read["responses"]["200"]["headers"]) and "304" in read["responses"]
    accept = _operation(doc, "post", "/v1/task-orders/{order_id}/accept")
    assert "If-Match" in _parameters(doc, "post", "/v1/task-orders/{order_id}/accept")
    assert "412" in accept["responses"] and "ETag" in accept["responses"]["200"]["headers"]
    assert "If-Match" in _parameters(doc, "patch", "/v1/creator-bindings/{binding_id}")
    create = _operation(doc, "post", "/v1/task-orders")
    assert "If-Match" not in _parameters(doc, "post", "/v1/task-orders") and "412" not in create["responses"]
    assert "ETag" in create["responses"]["201"]["headers"]
    ingest = _operation(doc, "post", "/v1/ingest/live-sessions")["responses"]
    assert ingest["201"]["content"] == ingest["200"]["content"], "a first ingest is 201, a later one 200: same body"


@pytest.mark.skipif(IS_POSTGRES, reason="the document is the same on every database: SQLite pass only")
async def test_what_the_service_answers_is_declared(client, factory: Factory, doc):
    """A task order's life through HTTP: each answer's status and the headers it carries are in
    the document for that operation."""
    merchant, product_id = await ready_merchant(client, factory)
    creator, platform = await factory.user("creator"), await factory.user("platform")
    start = minute(await factory.now() + timedelta(hours=2))

    body = order_body(creator, product_id, start)
    headers = {**merchant.headers, "Idempotency-Key": "contract-order", "X-Request-ID": "contract-1"}
    r = await client.post("/v1/task-orders", headers=headers, json=body)
    assert r.status_code == 201 and r.headers["etag"] == '"1"' and r.headers["x-request-id"] == "contract-1", r.headers
    _declared(doc, "post", "/v1/task-orders", r)
    order = r.json()
    r = await client.post("/v1/task-orders", headers=headers, json=body)
    assert r.headers.get("idempotent-replayed") == "true", r.headers
    _declared(doc, "post", "/v1/task-orders", r)

    path = f"/v1/task-orders/{order['id']}"
    r = await client.get(path, headers={**merchant.headers, "If-None-Match": '"1"'})
    assert r.status_code == 304, r.text
    _declared(doc, "get", "/v1/task-orders/{order_id}", r)
    for expected in (200, 429):  # one reminder a day, then 429 with Retry-After
        r = await client.post(f"{path}/remind", headers=merchant.headers)
        assert r.status_code == expected, r.text
        _declared(doc, "post", "/v1/task-orders/{order_id}/remind", r)
    assert "retry-after" in r.headers
    r = await client.post(f"{path}/accept", headers={**creator.headers, "If-Match": '"1"'})
    assert r.status_code == 412 and r.json()["code"] == "precondition_failed", r.text  # the reminder moved it on
    _declared(doc, "post", "/v1/task-orders/{order_id}/accept", r)
    r = await client.post(f"{path}/accept", headers={**creator.headers, "If-Match": '"2"'})
    assert r.status_code == 200, r.text
    _declared(doc, "post", "/v1/task-orders/{order_id}/accept", r)
    r = await client.post(f"{path}/cancel", headers={**merchant.headers, "If-Match": '"1"'}, json=CANCEL)
    assert r.status_code == 412, r.text
    _declared(doc, "post", "/v1/task-orders/{order_id}/cancel", r)

    await factory.advance_to(start)  # a live session is a fact: it cannot start in the service's future
    session = {"external_id": "contract-room", "host_id": creator.id, "started_at": start.isoformat(), "room_url": "https://l/1"}
    for expected in (201, 200):  # the first push creates the live session, the next one updates it
        r = await client.post("/v1/ingest/live-sessions", headers=platform.headers, json=session)
        assert r.status_code == expected, r.text
        _declared(doc, "post", "/v1/ingest/live-sessions", r)
    r = await client.get("/v1/task-orders/nope", headers=merchant.headers)
    assert r.status_code == 404
    _declared(doc, "get", "/v1/task-orders/{order_id}", r)


# ------------------------------------------------------------------ typed answers
def test_the_account_is_a_union_discriminated_by_role(doc):
    schemas = doc["components"]["schemas"]
    account = schemas["AccountOut"]
    assert account["discriminator"]["propertyName"] == "role"
    mapping = account["discriminator"]["mapping"]
    assert set(mapping) == {r.value for r in Role} and len(account["oneOf"]) == len(Role)
    creator = schemas["CreatorAccountOut"]
    assert creator["properties"]["role"] == {"type": "string", "enum": ["creator"]}
    profile = schemas[creator["properties"]["profile"]["$ref"].rsplit("/", 1)[1]]
    assert profile["properties"]["quotes"] == {"$ref": "#/components/schemas/QuotesOut"}
    assert profile["properties"]["contact"] == {"$ref": "#/components/schemas/ContactOut"}
    assert "contact" not in profile["required"] and "nickname" in profile["required"]
    card = schemas["CreatorCard"]["properties"]["quotes"]
    assert card == {"$ref": "#/components/schemas/QuotesOut"}


@pytest.mark.skipif(IS_POSTGRES, reason="the document is the same on every database: SQLite pass only")
async def test_accounts_as_answered_fit_their_role_and_no_other(client, factory: Factory, doc):
    validator = _validator(doc, "AccountOut")
    merchant = await factory.user("merchant")
    seen = {}
    for role in ("merchant", "creator", "agency", "group_leader", "service_provider", "platform"):
        user = merchant if role == "merchant" else await factory.user(role)
        r = await client.get("/v1/accounts/me", headers=user.headers)
        assert r.status_code == 200, r.text
        seen[role] = r.json()
        validator.validate(seen[role])
    r = await client.get(f"/v1/accounts/{seen['creator']['id']}", headers=merchant.headers)  # contact hidden
    assert r.status_code == 200 and "contact" not in r.json()["profile"], r.text
    validator.validate(r.json())
    assert "contact" in seen["creator"]["profile"]
    # the union tells roles apart: a creator's profile under a merchant's role fits no member
    assert not validator.is_valid({**seen["creator"], "role": "merchant"})
    assert not validator.is_valid({**seen["merchant"], "profile": {**seen["merchant"]["profile"], "nickname": "x"}})


# fields named like a closed set that are not one: ids of accounts, a URI, a form's constant, and
# the event envelope's state and action (which machine's depends on the event `type`)
NOT_CLOSED = {
    ("DisputeOut", "opened_by"),
    ("TopUpOut", "decided_by"),
    ("Problem", "type"),
    ("Body_issue_token_v1_auth_token_post", "grant_type"),
    ("EventData", "action"),
    ("EventData", "from_state"),
    ("EventData", "to_state"),
    ("TransitionInfo", "action"),
}
CLOSED_NAME = re.compile(
    r"^(state|status|kind|bucket|type|action|role)$|_(state|status|kind|type|rule|role|by|action|method|mode)$"
)


def test_every_closed_set_is_a_named_enum(doc):
    """A field named like a closed set (`state`, `status`, `kind`, `*_role`, `*_rule` …) is an enum
    (a `$ref` to a named one, or a constant) or a number, unless it is listed in NOT_CLOSED."""
    schemas = doc["components"]["schemas"]

    def closed(node: Any) -> bool:
        if "$ref" in node:
            target = schemas[node["$ref"].rsplit("/", 1)[1]]
            return "enum" in target or "const" in target
        if "enum" in node or "const" in node or node.get("type") in ("integer", "number", "boolean"):
            return True
        if "anyOf" in node:
            return all(closed(option) or option.get("type") == "null" for option in node["anyOf"])
        return node.get("type") == "array" and closed(node["items"])

    found = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, node in schema.get("properties", {}).items()
        if CLOSED_NAME.search(field) and (name, field) not in NOT_CLOSED and not closed(node)
    ]
    assert not found, found
    # spot checks of single sources
    from app.db.models.task_orders import HoldStatus, LedgerKind
    from app.domain.notifications import NOTIFICATION_KINDS
    from app.state.task_order import TASK_ORDER

    assert schemas["LedgerKind"]["enum"] == [k.value for k in LedgerKind]
    assert schemas["HoldStatus"]["enum"] == [k.value for k in HoldStatus]
    assert schemas["NotificationKind"]["enum"] == list(NOTIFICATION_KINDS)
    history = schemas["TaskOrderTransitionOut"]["properties"]
    assert history["to_state"] == {"$ref": "#/components/schemas/TaskOrderState"}
    assert history["action"] == {"$ref": "#/components/schemas/TaskOrderHistoryAction"}
    assert schemas["TaskOrderHistoryAction"]["enum"] == ["create", *TASK_ORDER.actions]
    assert schemas["DeliveryOut"]["properties"]["event_type"] == {"$ref": "#/components/schemas/EventType"}


def test_no_field_whose_shape_is_known_is_an_untyped_bag(doc):
    """An object with no properties that takes anything is allowed only where the value really
    is free-form (a validation error's echoed input, a notification's payload of varying kinds)."""
    free_form = {
        ("ValidationError", "input"),  # whatever the caller sent
        ("ValidationError", "ctx"),
        ("Problem", "errors"),
    }
    # a transition's reason, as the action's body gave it: a note, or {code, note}, or {reasons}
    free_form |= {(name, "reason") for name in doc["components"]["schemas"] if name.endswith("TransitionOut")}
    found = []

    def untyped(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if node == {} or set(node) <= {"title", "description"}:
            return True
        if node.get("type") == "object" and "properties" not in node and node.get("additionalProperties", True) in (True, {}):
            return True
        return any(untyped(option) for option in node.get("anyOf", []))

    for name, schema in doc["components"]["schemas"].items():
        for field, node in schema.get("properties", {}).items():
            if (name, field) not in free_form and (untyped(node) or untyped(node.get("items"))):
                found.append(f"{name}.{field}")
    assert not found, found
    event = doc["components"]["schemas"]["EventOut"]["properties"]
    assert event["type"] == {"$ref": "#/components/schemas/EventType"}
    # a machine's transition, or the one event that is not (webhook.disabled), each with its schema
    assert event["data"]["anyOf"] == [
        {"$ref": "#/components/schemas/EventData"},
        {"$ref": "#/components/schemas/WebhookDisabledData"},
    ]
    disabled = doc["components"]["schemas"]["WebhookDisabledData"]
    assert disabled["additionalProperties"] is False and set(disabled["required"]) == set(disabled["properties"])
    data = doc["components"]["schemas"]["EventData"]["properties"]
    assert data["machine"] == {"$ref": "#/components/schemas/MachineName"}
    assert "task_order" in doc["components"]["schemas"]["MachineName"]["enum"]
    assert data["actor_role"] == {"$ref": "#/components/schemas/ActorRole"}
    assert doc["components"]["schemas"]["TaskOrderTransitionOut"]["properties"]["actor_role"] == data["actor_role"]
    assert set(doc["components"]["schemas"]["ActorRole"]["enum"]) == {r.value for r in Role} | {"system"}


@pytest.mark.skipif(IS_POSTGRES, reason="the document is the same on every database: SQLite pass only")
async def test_events_as_answered_fit_event_data(client, factory: Factory, doc):
    merchant, product_id = await ready_merchant(client, factory)
    creator = await factory.user("creator")
    body = order_body(creator, product_id, minute(await factory.now() + timedelta(hours=2)))
    r = await client.post("/v1/task-orders", headers=merchant.headers, json=body)
    assert r.status_code == 201, r.text
    r = await client.get("/v1/events", headers=merchant.headers, params={"limit": 100})
    assert r.status_code == 200, r.text
    events = r.json()["items"]
    assert any(e["type"] == "task_order.created" for e in events), events
    validator = _validator(doc, "EventOut")
    for event in events:
        validator.validate(event)
    created = next(e for e in events if e["type"] == "task_order.created")["data"]
    assert created["from_state"] is None and created["version"] == 1 and created["amount_fen"] > 0


# ------------------------------------------------------------------ examples, links, security
def test_every_request_body_has_an_example_that_fits_it(doc):
    checked = 0
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
                assert "example" in media, f"{method} {path} {media_type}: no example"
                schema = {**media["schema"], "components": doc["components"]}
                errors = [e.message for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(media["example"])]
                assert not errors, f"{method} {path}: the example does not fit: {errors}"
                checked += 1
    assert checked > 40


def test_creations_and_actions_link_to_the_entitys_read_and_actions(doc):
    operations = {op["operationId"]: (path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()}
    links = _operation(doc, "post", "/v1/task-orders")["responses"]["201"]["links"]
    for target in ("get_task_order", "accept_task_order", "cancel_task_order", "get_task_order_history"):
        assert links[target] == {
            "operationId": target,
            "parameters": {"order_id": "$response.body#/id"},
            "description": links[target]["description"],
        }
    # a creation under another entity links to the created one's own paths
    dispute = _operation(doc, "post", "/v1/task-orders/{order_id}/disputes")["responses"]["201"]["links"]
    assert dispute["get_dispute"]["parameters"] == {"dispute_id": "$response.body#/id"} and "withdraw_dispute" in dispute
    accepted = _operation(doc, "post", "/v1/task-orders/{order_id}/accept")["responses"]["200"]["links"]
    assert "get_task_order" in accepted and "accept_task_order" not in accepted
    count = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                for name, link in response.get("links", {}).items():
                    target_path, _, target = operations[link["operationId"]]
                    params = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
                    assert set(link["parameters"]) <= params, f"{method} {path} {status} -> {name}"
                    count += 1
    assert count > 100


def test_every_operation_declares_its_security_and_the_document_a_server(doc):
    assert doc["servers"] and doc["servers"][0]["url"]
    public = set()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "security" in operation, f"{method} {path}"
            if operation["security"] == []:
                public.add(operation["operationId"])
    assert public == {"issue_token", "healthz", "readyz", "metrics"}


@pytest.mark.skipif(IS_POSTGRES, reason="the document is the same on every database: SQLite pass only")
def test_redocly_recommended_rules_find_no_error(doc, tmp_path):
    """`npx @redocly/cli lint` (the version docs/examples/package-lock.json pins) on the schema the
    service serves at /openapi.json."""
    tools()
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc, ensure_ascii=False))
    result = run(
        ["npx", "--no-install", "redocly", "lint", "--extends=recommended", "--format=stylish", str(path)],
        cwd=EXAMPLES,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    errors = [line for line in output.splitlines() if " error " in f" {line} "]
    assert not errors and "Your API description is valid" in output, output


@pytest.mark.skipif(IS_POSTGRES, reason="the document is the same on every database: SQLite pass only")
async def test_python_m_app_openapi_writes_the_served_document(client, tmp_path):
    """What `make clients` generates from is what the service serves at /openapi.json."""
    import subprocess
    import sys

    path = tmp_path / "openapi.json"
    done = subprocess.run(
        [sys.executable, "-m", "app", "openapi", "--output", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    served = await client.get("/openapi.json")
    assert served.status_code == 200
    assert json.loads(path.read_text(encoding="utf-8")) == served.json()
