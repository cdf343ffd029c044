"""One transaction per request, and idempotent POSTs.

`TxRoute` opens the request's session before the endpoint runs and commits after the endpoint
has produced its response (already serialised), before anything is sent: a failed commit
reaches the client as an error, never as a 200. With an `Idempotency-Key`, the stored answer is
written in that same transaction, so the effect and its replayable answer commit together."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from fastapi import Request, Response
from fastapi.routing import APIRoute
from prometheus_client import Counter
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import Match
from starlette.types import Scope

from app.core import links
from app.core.clock import real_now
from app.core.errors import Conflict, DomainError, ValidationFailed
from app.core.i18n import msg
from app.core.security import decode_token
from app.db.base import new_id
from app.db.replica import ON_REPLICA, Replica
from app.db.repositories import platform as repo
from app.db.session import LeanSession
from app.state.core import EXPECTED_VERSION

log = logging.getLogger("app.api.routing")
RETENTION = timedelta(hours=24)
_IN_FLIGHT: set[tuple[str, str]] = set()


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers at the request's path: Starlette's 405 names
    only the methods of the first route whose path matched (`Allow: GET` where PATCH works too)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches({**request.scope, "method": "GET"})[0] != Match.NONE:
            methods |= route_methods
    return sorted(methods)


def _caller_id(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return decode_token(token)[0]
    except DomainError:
        return None


async def _request_hash(request: Request) -> str:
    """What the request means: method, path, its query parameters in order of name, and a JSON
    body canonicalised (keys sorted, no insignificant white space), so the same request written
    differently replays instead of being `idempotency_key_reused`."""
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query_params.multi_items()))
    head = f"{request.method} {request.url.path}?{query}\n".encode()
    body = await request.body()
    with contextlib.suppress(ValueError):  # not JSON (or empty): its bytes are its meaning
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(head + body).hexdigest()


_ETAG = re.compile(rb'^\s*(?:W/)?"(\d+)"\s*$')
_VERSION = re.compile(rb'"version":(\d+)')


def _if_match(request: Request) -> int | None:
    """The version an `If-Match` header names (None without one, or for `*`); malformed: 422."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    found = _ETAG.match(value.encode("latin-1"))
    if found is None:
        raise ValidationFailed('If-Match takes an entity tag such as "3" (the version) or *', loc=["header", "If-Match"])
    return int(found.group(1))


def _none_match(header: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names the answer's entity tag (RFC 9110, 13.1.2): `*`, or any tag
    of its comma-separated list, compared weakly (`W/"3"` names `"3"`)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


class VersionReading(Enum):
    """How `TxRoute` reads the `version` of an answer for its `ETag`."""

    SCAN = "scan"  # the first `"version":` of the serialised answer is the entity's: a regex finds it
    PARSE = "parse"  # a field before it may hold a `version` key: the answer is parsed again


def version_reading(model: Any) -> VersionReading | None:
    """How answers of `model` give their `ETag`: None when they are not one versioned entity
    (no top-level `id` and `version`). SCAN when no field before `version` can hold a key
    `version` (nested objects without one are fine), so the first `"version":` in the JSON is
    the entity's (a string cannot fake it: JSON escapes its quotes); PARSE otherwise."""
    fields = getattr(model, "model_fields", None)
    if not fields or "version" not in fields or "id" not in fields:
        return None
    for name, field in fields.items():
        if name == "version":
            return VersionReading.SCAN
        if _may_hold_version(field.annotation, {model}):
            return VersionReading.PARSE
    return VersionReading.PARSE  # (not reached: `version` is one of the fields)


def answers_versioned_entity(model: Any) -> bool:
    """Whether `TxRoute` gives answers of `model` an `ETag` (and honours `If-None-Match` on a GET):
    for the OpenAPI document (app/api/openapi.py)."""
    return version_reading(model) is not None


def _may_hold_version(annotation: Any, seen: set[Any]) -> bool:
    """Whether a value of `annotation` may serialise with a key `version` somewhere inside it."""
    if annotation is Any:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:  # a recursive model: its own fields are being looked at already
            return False
        seen.add(annotation)
        computed = annotation.model_computed_fields
        return (
            "version" in computed
            or any(
                "version" in (name, field.alias, field.serialization_alias) or _may_hold_version(field.annotation, seen)
                for name, field in annotation.model_fields.items()
            )
            or any(_may_hold_version(c.return_type, seen) for c in computed.values())
        )
    if isinstance(annotation, type):  # a bare dict or list holds anything; a scalar holds no key
        return issubclass(annotation, (dict, list, tuple, set, frozenset))
    origin = get_origin(annotation)
    if origin is Literal or annotation is None:
        return False
    if origin is Annotated:
        return _may_hold_version(get_args(annotation)[0], seen)
    if isinstance(origin, type) and issubclass(origin, Mapping):  # its keys are data
        return True
    if origin is None:  # a TypeVar, a forward reference: not known, so maybe
        return True
    return any(_may_hold_version(arg, seen) for arg in get_args(annotation) if arg is not type(None) and arg is not ...)


def _top_version(body: bytes) -> int | None:
    """The top-level `version` of a JSON answer."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    version = document.get("version") if isinstance(document, dict) else None
    return version if type(version) is int else None


def _query_names(dependant: Any) -> frozenset[str]:
    """The query parameters an operation declares, its dependencies' included."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names |= {field.alias for field in current.query_params}
        stack.extend(current.dependencies)
    return frozenset(names)


async def _claim(session: AsyncSession, account_id: str, key: str, request_hash: str) -> Response | None:
    """Return the stored answer to replay, or None when this request is the first."""
    if not await repo.try_lock_key(session, account_id, key):
        raise Conflict("a request with this Idempotency-Key is still running", code="idempotency_key_in_use")
    stored = await repo.stored_answer(session, account_id, key)
    if stored is not None and stored.created_at < real_now() - RETENTION:
        await repo.forget_answer(session, stored.id)
        stored = None
    if stored is None:
        return None
    if stored.request_hash != request_hash:
        raise ValidationFailed(
            "this Idempotency-Key was used with a different request",
            code="idempotency_key_reused",
            loc=["header", "Idempotency-Key"],
        )
    headers = dict(stored.extra_headers or {})
    headers["Idempotent-Replayed"] = "true"
    return Response(content=stored.response_body, status_code=stored.status_code, media_type=stored.content_type, headers=headers)


E = TypeVar("E", bound=Callable[..., Any])


def one_write(endpoint: E) -> E:
    """Declare that this operation writes once: its domain ends with one statement that carries
    the whole write (a transition or a freeze, with everything behind it). Without an
    Idempotency-Key its request then runs without BEGIN/COMMIT (`LeanSession.defer_transaction`:
    reads on their own, the write committing by itself). Paths that need more (firing an
    overdue timer first) begin a transaction as usual; a second write after the committed one
    fails loudly (`WriteAfterCommit`). `tests/test_lean_session.py` holds the declared routes to it."""
    endpoint.one_write = True  # type: ignore[attr-defined]  # a function attribute: mypy types none
    return endpoint


def replica_read(endpoint: E) -> E:
    """Declare a heavy read that tolerates a little lag (scale.md: stock plans and their
    exports, base statistics, incentive statements and exports, history exports): with
    `LC_DATABASE_REPLICA_URL` set its domain reads go to the replica while it is fresh enough
    (app/db/replica.py), through the `ReadSession` dependency; authentication and anything read
    through the request's own session stay on the primary. Its answer carries `X-Data-As-Of`."""
    endpoint.replica_read = True  # type: ignore[attr-defined]  # a function attribute: mypy types none
    return endpoint


REPLICA_READS = Counter(
    "livecollab_replica_reads",
    "Answers of the @replica_read operations with LC_DATABASE_REPLICA_URL set, by where they read",
    ["source"],
)


async def _on_replica(request: Request, run: Callable[[], Coroutine[Any, Any, Response]]) -> Response:
    """Run `run` with `request.state.read_db` on the replica when it is fresh, else on the primary
    (None: `ReadSession` then gives the request's own session), and say how fresh in
    `X-Data-As-Of`."""
    replica: Replica | None = getattr(request.app.state, "replica", None)
    freshness = await replica.freshness() if replica is not None else None
    request.state.read_db = None
    if replica is None or freshness is None or not freshness.on_replica:
        response = await run()
        response.headers["x-data-as-of"] = _utc(real_now())
        if replica is not None:
            REPLICA_READS.labels("primary").inc()
        return response
    async with replica.sessionmaker() as read_session:
        read_session.info[ON_REPLICA] = True
        try:
            await read_session.connection()  # a replica gone since its check: read on the primary
        except (DBAPIError, OSError) as error:  # asyncpg's connect refusal comes as an OSError
            log.warning("replica unreachable, reading on the primary: %s", type(getattr(error, "orig", error)).__name__)
            replica.forget()
            response = await run()
            response.headers["x-data-as-of"] = _utc(real_now())
            REPLICA_READS.labels("primary").inc()
            return response
        request.state.read_db = read_session
        try:
            response = await run()
        finally:
            request.state.read_db = None
            await read_session.rollback()
    response.headers["x-data-as-of"] = _utc(freshness.data_as_of(real_now()))
    REPLICA_READS.labels("replica").inc()
    return response


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TxRoute(APIRoute):
    # The literal start of the path, up to its first parameter; set by `main.py` for the routes
    # it adds to the application flat. A request whose path does not start with it cannot
    # match, and is turned away before FastAPI's and Starlette's matching, which for each of
    # the ~150 routes tried in order cost eight calls (a sixth of a task-order request's).
    literal_prefix: str | None = None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        prefix = self.literal_prefix  # (behind a root_path, Starlette's own matching decides)
        if prefix is not None and scope["type"] == "http" and not scope.get("root_path") and not scope["path"].startswith(prefix):
            return Match.NONE, {}
        return super().matches(scope)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()
        writes_once = getattr(self.endpoint, "one_write", False)
        reads_replica = getattr(self.endpoint, "replica_read", False)
        known_query = _query_names(self.dependant)
        reading = version_reading(self.response_model)
        entity_answer, scan = reading is not None, reading is VersionReading.SCAN  # (decided once, not per request)

        async def handler(request: Request) -> Response:
            if request.scope["query_string"]:
                unknown = sorted(set(request.query_params) - known_query)
                if unknown:  # a typo (?state= for ?status=) must not silently return everything
                    raise ValidationFailed(
                        msg("unknown query parameter: {names}", names=", ".join(unknown)),
                        loc=["query", unknown[0]],
                    )
            links.REQUEST.set(request.scope)  # the base of the links its answer hands out
            expected = _if_match(request) if request.method != "GET" else None
            token = EXPECTED_VERSION.set((expected, request.url.path)) if expected is not None else None
            try:
                if reads_replica:
                    response = await _on_replica(request, lambda: self._in_transaction(request, endpoint, writes_once))
                else:
                    response = await self._in_transaction(request, endpoint, writes_once)
            finally:
                if token is not None:
                    EXPECTED_VERSION.reset(token)
            body = getattr(response, "body", None) if entity_answer and response.status_code < 300 else None
            if body:
                if scan:  # the task-order path: no second parse
                    found = _VERSION.search(body)
                    version = found.group(1).decode() if found is not None else None
                else:
                    number = _top_version(body)
                    version = str(number) if number is not None else None
                if version is not None:
                    etag = f'"{version}"'
                    response.headers["etag"] = etag
                    if request.method == "GET" and _none_match(request.headers.get("if-none-match"), etag):
                        return Response(status_code=304, headers={"etag": etag})
            return response

        return handler

    @staticmethod
    async def _in_transaction(request: Request, endpoint: Callable, writes_once: bool) -> Response:
        """The endpoint in the request's transaction, with its Idempotency-Key's claim and stored
        answer in that same transaction."""
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        account_id = _caller_id(request) if key else None
        flight = (account_id, key) if account_id and key else None
        if flight:
            if len(flight[1]) > 200:
                raise ValidationFailed("Idempotency-Key is longer than 200 characters", loc=["header", "Idempotency-Key"])
            if flight in _IN_FLIGHT:
                raise Conflict("a request with this Idempotency-Key is still running", code="idempotency_key_in_use")
            _IN_FLIGHT.add(flight)
        try:
            async with request.app.state.sessionmaker() as session:
                request.state.db = session
                if writes_once and not flight and isinstance(session, LeanSession):
                    session.defer_transaction()
                try:
                    if flight:
                        request_hash = await _request_hash(request)
                        replay = await _claim(session, flight[0], flight[1], request_hash)
                        if replay is not None:
                            await session.rollback()
                            return replay
                    response = await endpoint(request)
                    if flight and response.status_code < 500 and hasattr(response, "body"):
                        await repo.store_answer(
                            session,
                            {
                                "id": new_id("idk"),
                                "account_id": flight[0],
                                "key": flight[1],
                                "request_hash": request_hash,
                                "status_code": response.status_code,
                                "content_type": response.media_type,
                                "response_body": bytes(response.body).decode("utf-8", "replace"),
                                "extra_headers": _replayable_headers(response),
                                "created_at": real_now(),
                            },
                        )
                    await session.commit()
                    return response
                except DomainError as error:
                    # an error whose writes stand (a failed login's count) commits them
                    await (session.commit() if getattr(error, "keeps_writes", False) else session.rollback())
                    raise
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            if flight:
                _IN_FLIGHT.discard(flight)


def _replayable_headers(response: Response) -> dict[str, str]:
    keep = ("location", "retry-after")
    return {k: v for k, v in response.headers.items() if k.lower() in keep}
