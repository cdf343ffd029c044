"""The OpenAPI document clients are generated from (spec/client-contract.md, "A typed contract").

FastAPI derives paths, bodies and answers from the routes; this post-processor adds, in one
place, what the routes cannot say by themselves, each from its single source:
- error answers as `application/problem+json` (`Problem`), the event catalogue (`EventType`);
- the headers the service reads (`Idempotency-Key` on POSTs, `If-Match`/`If-None-Match` where
  `TxRoute` honours them, `Accept-Language`, `X-Request-ID`) and writes (`ETag`,
  `Idempotent-Replayed`, `Retry-After`, `X-Request-ID`, `Content-Language`);
- the statuses `TxRoute` can answer besides the route's own (304, 412);
- the account as a union discriminated by `role`, each role with its own `profile`
  (from `ROLE_FIELDS`), typed quotes, contact and event data;
- an example for every request body, links from the operations that create or move an
  entity to its read and actions, `security` on every operation, a `servers` entry.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.routing import TxRoute, answers_versioned_entity
from app.core.errors import PROBLEM_CODES
from app.domain.accounts import ROLE_FIELDS, Role
from app.domain.accounts.service import PRIVATE, Profile
from app.domain.schemas import Problem
from app.state.core import SYSTEM_ROLE

ERROR_RESPONSES: dict[str, str] = {
    "400": "Bad request",
    "401": "Not authenticated (`unauthenticated`)",
    "403": "This caller may not do this (`forbidden`, or a module code)",
    "404": "Not found, or another party's resource (`not_found`)",
    "409": "Conflict with the current state (`invalid_transition`, `conflict`, or a module code)",
    "413": "Body too large (`payload_too_large`)",
    "422": "Invalid input (`validation_failed` with `errors`, or a module code)",
    "429": "Quota or rate limit reached (`quota_exhausted`, `rate_limited`); see `Retry-After`",
    "431": "Request headers too large (`headers_too_large`)",
}
PUBLIC_OPERATIONS = {"issue_token", "healthz", "readyz", "metrics"}
# Every other operation reads or writes the database: 503 `service_unavailable` (app/api/errors.py).
NO_DATABASE = {"healthz", "metrics"}
UNAVAILABLE = "The database cannot be reached (`service_unavailable`); see `Retry-After`"
# Creations under an entity's path that check `If-Match` against that entity (its version now).
IF_MATCH_ON_PARENT = {"open_task_order_dispute", "create_redemption"}
# Answers a route sets itself besides its declared status (`response.status_code = …`).
EXTRA_SUCCESS = {
    "ingest_live_session": ("200", "201", "the first push of a live session creates it (201); a later one (its end) is 200"),
}

_REF = "#/components/schemas/"
_HEADER = "#/components/headers/"

PARAMETERS: dict[str, dict[str, Any]] = {
    "AcceptLanguage": {
        "name": "Accept-Language",
        "in": "header",
        "required": False,
        "description": "`zh-CN` (or `zh`) answers problem `title` and `detail` in Chinese; otherwise English",
        "schema": {"type": "string", "maxLength": 100, "pattern": r"^[A-Za-z0-9*,;=. -]*$"},
        "example": "zh-CN",
    },
    "XRequestId": {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Your id of this request (at most 64 characters); answered as `X-Request-ID` and logged",
        "schema": {"type": "string", "maxLength": 64, "pattern": r"^[A-Za-z0-9._:-]*$"},
        "example": "web-7f3a2c",
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Retries with the same key (and the same request) replay the first answer for 24 h "
        "(`Idempotent-Replayed: true`); the same key with another request is 422 `idempotency_key_reused`",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[!-~]+$"},
        "example": "3f1c9b52-order-create",
    },
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": 'The entity tag (`"<version>"`) the caller\'s screen showed, or `*`: when the entity has '
        "another version nothing happens and the answer is 412 `precondition_failed`",
        "schema": {"type": "string", "pattern": r'^(\*|(W/)?"[0-9]{1,18}")$'},
        "example": '"1"',
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": 'The entity tag (`"<version>"`) the caller holds: 304 with no body while it is current',
        "schema": {"type": "string", "pattern": r'^(W/)?"[0-9]{1,18}"$'},
        "example": '"1"',
    },
}
HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": 'The entity\'s version as a strong entity tag (`"<version>"`), for `If-Match` and `If-None-Match`',
        "schema": {"type": "string", "pattern": r'^"[0-9]+"$'},
        "example": '"2"',
    },
    "XRequestId": {
        "description": "The request's id (the caller's `X-Request-ID`, or one the service made up)",
        "schema": {"type": "string"},
    },
    "IdempotentReplayed": {
        "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "RetryAfter": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    },
    "ContentLanguage": {
        "description": "The language of the problem's `title` and `detail` (`en` or `zh-CN`)",
        "schema": {"type": "string"},
    },
    "XDataAsOf": {
        "description": "How fresh a heavy read is (docs/scaling.md): read on the streaming replica, its last replayed "
        "transaction's time; read on the primary, the answer's time (UTC)",
        "schema": {"type": "string", "format": "date-time"},
    },
}


def install(app: FastAPI, *, event_types: Iterable[str]) -> None:
    """Replace `app.openapi` with FastAPI's document post-processed (built once, then cached)."""
    build = app.openapi
    event_types = tuple(event_types)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build(), app.routes, event_types)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def _histories(schemas: dict[str, Any]) -> list[str]:
    """`TransitionOut` and each machine's `<Machine>TransitionOut` (app/domain/schemas.py `history_of`)."""
    return [name for name in schemas if name.endswith("TransitionOut")]


def complete(schema: dict[str, Any], routes: Iterable[Any], event_types: tuple[str, ...]) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template=_REF + "{model}")
    schemas["EventType"] = {
        "title": "EventType",
        "type": "string",
        "enum": list(event_types),
        "description": "Every event type: `<machine>.<event>` as each machine's rules name them.",
    }
    # the problem codes, from the catalogue (app/core/errors.py PROBLEM_CODES)
    schemas["ProblemCode"] = {
        "title": "ProblemCode",
        "type": "string",
        "enum": list(PROBLEM_CODES),
        "description": "Every problem `code` the service answers; it never changes with the language.\n\n"
        + "\n".join(f"- `{c.code}` ({c.status}): {c.title}" for c in PROBLEM_CODES.values()),
    }
    schemas["Problem"]["properties"]["code"] = {"$ref": _REF + "ProblemCode"}
    _typed_bags(schemas)
    schemas["ActorRole"] = {
        "title": "ActorRole",
        "type": "string",
        "enum": [*(role.value for role in Role), SYSTEM_ROLE],
        "description": "Who fired a transition: an account's role, or `system` (timers, signals, the payment gateway)",
    }
    schemas["MachineName"] = {
        "title": "MachineName",
        "type": "string",
        "enum": list(dict.fromkeys(t.split(".", 1)[0] for t in event_types if t not in NON_TRANSITION_EVENTS)),
        "description": "The workflow machines (`GET /v1/state-machines`)",
    }
    for name in _histories(schemas):
        schemas[name]["properties"]["actor_role"] = {"$ref": _REF + "ActorRole"}
    components["headers"] = {**components.get("headers", {}), **HEADERS}
    schema["servers"] = [{"url": "/", "description": "the service that serves this document"}]

    by_operation = {
        (route.path, method.lower()): route for route in routes if isinstance(route, APIRoute) for method in route.methods or ()
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            route = by_operation.get((path, method))
            _headers_and_statuses(operation, method, route)
            _request_example(operation, schema)
            if operation.get("operationId") in PUBLIC_OPERATIONS:
                operation["security"] = []
            elif "security" not in operation:
                operation["security"] = [{"OAuth2PasswordBearer": []}]
    _links(schema)
    text = json.dumps(schema)
    if f'"{_REF}ValidationError"' not in text:  # FastAPI's 422 item model, when nothing uses it
        schemas.pop("ValidationError", None)
    return schema


# -- headers and statuses -----------------------------------------------------------------------
def _headers_and_statuses(operation: dict[str, Any], method: str, route: APIRoute | None) -> None:
    transactional = isinstance(route, TxRoute)
    versioned = transactional and route is not None and answers_versioned_entity(route.response_model)
    # If-Match guards the entity the path names (Workflow.expect_version): not a creation's,
    # unless it checks the entity it is created under
    conditional = (
        versioned
        and route is not None
        and method != "get"
        and "{" in route.path
        and (route.status_code != 201 or operation.get("operationId") in IF_MATCH_ON_PARENT)
    )
    authenticated = operation.get("operationId") not in PUBLIC_OPERATIONS
    parameters = operation.setdefault("parameters", [])
    wanted = ["AcceptLanguage", "XRequestId"]
    if method == "post" and transactional and authenticated:
        wanted.append("IdempotencyKey")
    if versioned and method == "get":
        wanted.append("IfNoneMatch")
    if conditional:
        wanted.append("IfMatch")
    # inline, not `$ref`: tools that walk an operation's parameters then see each one's schema
    have = {(p.get("in"), p.get("name", "").lower()) for p in parameters}
    parameters.extend(
        copy.deepcopy(PARAMETERS[name]) for name in wanted if ("header", PARAMETERS[name]["name"].lower()) not in have
    )

    responses = operation.setdefault("responses", {})
    extra = EXTRA_SUCCESS.get(operation.get("operationId", ""))
    if extra and extra[1] not in responses:
        declared, other, text = extra
        responses[other] = copy.deepcopy(responses[declared])
        responses[declared]["description"] = responses[other]["description"] = text
    for status, text in ERROR_RESPONSES.items():
        responses.setdefault(status, {"description": text})
    if operation.get("operationId") not in NO_DATABASE:
        responses.setdefault("503", {"description": UNAVAILABLE})
    if versioned and method == "get":
        responses["304"] = {
            "description": "Not modified: the entity still has the version `If-None-Match` names (no body)",
            "headers": {"ETag": {"$ref": _HEADER + "ETag"}},
        }
    if conditional:
        responses["412"] = {
            "description": "`precondition_failed`: the entity no longer has the version `If-Match` names; "
            "the problem carries its `state`, `version` and `allowed_actions` now, and nothing changed"
        }
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = {"$ref": _HEADER + "XRequestId"}
        if status.startswith("2"):
            if route is not None and getattr(route.endpoint, "replica_read", False):
                headers["X-Data-As-Of"] = {"$ref": _HEADER + "XDataAsOf"}
            if versioned:
                headers["ETag"] = {"$ref": _HEADER + "ETag"}
            if "IdempotencyKey" in wanted:
                headers["Idempotent-Replayed"] = {"$ref": _HEADER + "IdempotentReplayed"}
        if status[0] in "45":
            response["content"] = {"application/problem+json": {"schema": {"$ref": _REF + "Problem"}}}
            headers["Content-Language"] = {"$ref": _HEADER + "ContentLanguage"}
        if status in ("409", "429", "503"):
            headers["Retry-After"] = {"$ref": _HEADER + "RetryAfter"}


# -- typed bags: profile, quotes, contact, event data -------------------------------------------
def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _typed_bags(schemas: dict[str, Any]) -> None:
    schemas["QuotesOut"] = {
        "title": "QuotesOut",
        "type": "object",
        "description": "A creator's hourly quotes in fen (null: not quoted)",
        "properties": {
            "dedicated_hourly_fen": _nullable({"type": "integer", "minimum": 0}),
            "shared_hourly_fen": _nullable({"type": "integer", "minimum": 0}),
        },
        "required": ["dedicated_hourly_fen", "shared_hourly_fen"],
        "additionalProperties": False,
    }
    schemas["ContactOut"] = {
        "title": "ContactOut",
        "type": "object",
        "description": "A creator's contact (shown to the creator and operators only)",
        "properties": {"phone": _nullable({"type": "string"}), "wechat": _nullable({"type": "string"})},
        "required": ["phone", "wechat"],
        "additionalProperties": False,
    }
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422 model; ours is Problem
    for name in _histories(schemas):
        schemas[name]["properties"]["reason"] = {
            "title": "Reason",
            "description": "Why, as the action's body gave it: a note, or an object such as `{code, note}` or `{reasons}`",
            "anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": True}, {"type": "null"}],
        }
    if "CreatorCard" in schemas:
        schemas["CreatorCard"]["properties"]["quotes"] = {"$ref": _REF + "QuotesOut"}
    if "AccountOut" in schemas:
        _account_union(schemas)
    if "EventOut" in schemas:
        schemas["EventData"] = _event_data()
        schemas["WebhookDisabledData"] = _webhook_disabled_data()
        properties = schemas["EventOut"]["properties"]
        properties["type"] = {"$ref": _REF + "EventType"}
        properties["data"] = {
            "description": "`EventData` for every event of a machine's transition; `WebhookDisabledData` for `webhook.disabled`",
            "anyOf": [{"$ref": _REF + "EventData"}, {"$ref": _REF + "WebhookDisabledData"}],
        }
    if "DeliveryOut" in schemas:
        schemas["DeliveryOut"]["properties"]["event_type"] = {"$ref": _REF + "EventType"}


def _profile_field(name: str, source: dict[str, Any]) -> dict[str, Any]:
    if name == "quotes":
        return {"$ref": _REF + "QuotesOut"}
    if name == "contact":
        return {"$ref": _REF + "ContactOut"}
    if name == "experience_score":
        return _nullable({"type": "number", "minimum": 0, "maximum": 5})
    field = copy.deepcopy(source[name])
    field.pop("default", None)
    return field


def _account_union(schemas: dict[str, Any]) -> None:
    """`AccountOut` as `oneOf` one schema per role, told apart by `role`, each with the profile
    fields of its role (`ROLE_FIELDS`; the private ones only for the account itself and operators)."""
    base = schemas["AccountOut"]
    profile_fields = Profile.model_json_schema(ref_template=_REF + "{model}")["properties"]
    members: dict[str, str] = {}
    for role in Role:
        camel = "".join(part.title() for part in role.value.split("_"))
        fields = sorted(ROLE_FIELDS[role.value])
        schemas[f"{camel}Profile"] = {
            "title": f"{camel}Profile",
            "type": "object",
            "description": f"The profile of a {role.value}"
            + (
                f"; {', '.join(sorted(PRIVATE & set(fields)))} only for the account itself and operators"
                if PRIVATE & set(fields)
                else ""
            ),
            "properties": {name: _profile_field(name, profile_fields) for name in fields},
            "required": [name for name in fields if name not in PRIVATE],
            "additionalProperties": False,
        }
        member = copy.deepcopy(base)
        member["title"] = f"{camel}AccountOut"
        member["properties"]["role"] = {"type": "string", "enum": [role.value]}
        member["properties"]["profile"] = {"$ref": _REF + f"{camel}Profile"}
        schemas[f"{camel}AccountOut"] = member
        members[role.value] = _REF + f"{camel}AccountOut"
    schemas["AccountOut"] = {
        "title": "AccountOut",
        "description": "An account; its `profile` has the fields of its `role`.",
        "oneOf": [{"$ref": ref} for ref in members.values()],
        "discriminator": {"propertyName": "role", "mapping": members},
    }


# events that report no machine's transition: their data has a schema of its own
NON_TRANSITION_EVENTS = frozenset({"webhook.disabled"})


def _webhook_disabled_data() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "title": "WebhookDisabledData",
        "type": "object",
        "description": "`webhook.disabled`: every delivery to the webhook failed for 5 days, so it was disabled "
        "(PATCH it with `enabled: true` once the receiver works).",
        "properties": {
            "webhook_id": text,
            "url": {**text, "format": "uri"},
            "reason": {**text, "enum": ["failing"]},
            "failing_since": {**text, "format": "date-time", "description": "the first failure of the streak (UTC, `Z`)"},
        },
        "required": ["webhook_id", "url", "reason", "failing_since"],
        "additionalProperties": False,
    }


def _event_data() -> dict[str, Any]:
    """Every event is a transition of a machine: these fields always, plus what the event adds."""
    integer, text = {"type": "integer"}, {"type": "string"}
    return {
        "title": "EventData",
        "type": "object",
        "description": "The transition an event reports (`<machine>.created` has `from_state` null), the "
        "entity's `version` after it, and the fields its event type adds: money (`amount_fen`, "
        "`creator_share_fen`), the related ids (`creator_id`, `live_session_id`, `task_order_id`, `base_id`, "
        "`check_in_id`, `shop_id`) and a few more.",
        "properties": {
            "id": {**text, "description": "the entity's id"},
            "machine": {"$ref": _REF + "MachineName"},
            "action": text,
            "from_state": _nullable(text),
            "to_state": text,
            "version": integer,
            "actor_id": text,
            "actor_role": {"$ref": _REF + "ActorRole"},
            "amount_fen": integer,
            "creator_share_fen": integer,
            "traffic_units": integer,
            "creator_id": text,
            "live_session_id": text,
            "task_order_id": text,
            "base_id": text,
            "check_in_id": text,
            "shop_id": text,
            "method": text,
            "revision": {"type": "boolean"},
            "use_date": {"type": "string", "format": "date"},
            "expires_at": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "machine", "action", "from_state", "to_state", "version", "actor_id", "actor_role"],
        "additionalProperties": True,
    }


# -- examples ------------------------------------------------------------------------------------
_STRING_SAMPLES = (
    "13800000000",
    "+8613800000000",
    "sample",
    "S1",
    "abc",
    "2026-12",
    "a@b.cn",
    "09:00",
    "https://shop.example.cn/hook",
)


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def example_of(node: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A value that satisfies `node` (its example, default or first enum value when it has one),
    for the documentation and the generators that start from examples."""
    node = _resolve(node, schema)
    for key in ("example", "default"):
        if key in node and node[key] is not None:
            return node[key]
    if node.get("examples"):
        return node["examples"][0]
    if "enum" in node:
        return node["enum"][0]
    if "const" in node:
        return node["const"]
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if _resolve(o, schema).get("type") != "null"] or node[key]
            return example_of(options[0], schema, depth + 1)
    if "allOf" in node:
        return example_of(node["allOf"][0], schema, depth + 1)
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        if depth > 6:
            return {}
        properties = node.get("properties", {})
        return {name: example_of(properties[name], schema, depth + 1) for name in node.get("required", [])}
    if kind == "array":
        count = max(node.get("minItems", 1), 1) if depth < 6 else 0
        return [example_of(node.get("items", {}), schema, depth + 1) for _ in range(count)]
    if kind == "integer":
        low = node["exclusiveMinimum"] + 1 if "exclusiveMinimum" in node else node.get("minimum", 1)
        return int(min(max(low, 1), node.get("maximum", 10**9)))
    if kind == "number":
        return float(max(node.get("minimum", 1), 1))
    if kind == "boolean":
        return True
    if kind == "string":
        return _string_example(node)
    return None


def _string_example(node: dict[str, Any]) -> str:
    fmt = node.get("format")
    if fmt == "date-time":
        return datetime(2026, 12, 10, 12, 0).isoformat() + "Z"
    if fmt == "date":
        return date(2026, 12, 10).isoformat()
    if fmt in ("uri", "url"):
        return "https://shop.example.cn/hooks/live-collab"
    if fmt == "email":
        return "team@example.cn"
    low, high = node.get("minLength", 0), node.get("maxLength", 64)
    pattern = node.get("pattern")
    for sample in _STRING_SAMPLES if pattern else ("sample",):
        if low <= len(sample) <= high and (pattern is None or re.search(pattern, sample)):
            return sample
    return "x" * max(low, 1)


def _request_example(operation: dict[str, Any], schema: dict[str, Any]) -> None:
    for media in operation.get("requestBody", {}).get("content", {}).values():
        if "example" not in media and "examples" not in media and "schema" in media:
            media["example"] = example_of(media["schema"], schema)


# -- links -----------------------------------------------------------------------------------------
def _answer_ref(operation: dict[str, Any]) -> str | None:
    for status, response in operation.get("responses", {}).items():
        if status.startswith("2"):
            ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            if ref:
                return ref
    return None


def _links(schema: dict[str, Any]) -> None:
    """An operation that answers an entity (a creation or an action) links to the entity's read
    and actions, with the answer's `id` as their path parameter, so tools can chain calls."""
    paths = schema.get("paths", {})
    entity_path: dict[str, str] = {}  # answer schema -> the path that reads one by its id
    for path, operations in paths.items():
        get = operations.get("get")
        if get and path.endswith("}") and path.count("{") == 1:
            ref = _answer_ref(get)
            if ref and "id" in _resolve({"$ref": ref}, schema).get("properties", {}):
                entity_path.setdefault(ref, path)
    for path, operations in paths.items():
        for method, operation in operations.items():
            ref = _answer_ref(operation)
            if method == "get" or ref not in entity_path:
                continue
            base = entity_path[ref]
            param = base.rsplit("{", 1)[1].rstrip("}")
            links = {}
            for target, target_operations in paths.items():
                if target != base and not (target.startswith(base + "/") and target.count("{") == 1):
                    continue
                for target_method, target_operation in target_operations.items():
                    if (target, target_method) == (path, method):
                        continue
                    links[target_operation["operationId"]] = {
                        "operationId": target_operation["operationId"],
                        "parameters": {param: "$response.body#/id"},
                        "description": f"`{target_method.upper()} {target}` of the entity this answer shows",
                    }
            if links:
                for status, response in operation["responses"].items():
                    if status.startswith("2") and "content" in response:
                        response["links"] = links
