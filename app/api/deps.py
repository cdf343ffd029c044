"""Dependencies shared by the routers: the request's session, the caller, list parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import links
from app.core.errors import Forbidden, Unauthenticated
from app.core.i18n import msg, term
from app.domain.accounts import actor_of, link_actor
from app.state.core import Actor

_ROLES = frozenset({"merchant", "creator", "agency", "group_leader", "service_provider", "operator", "platform"})
oauth2 = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def get_session(request: Request) -> AsyncSession:
    """The session `TxRoute` opened for this request (committed after the endpoint returns)."""
    return request.state.db


async def get_read_session(request: Request) -> AsyncSession:
    """For `@replica_read` operations: the replica's session while it is fresh enough (set by
    `TxRoute`), else the request's own."""
    return getattr(request.state, "read_db", None) or request.state.db


async def get_actor(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> Actor:
    # the primary's session: a lagging replica could still show an ended session as live
    return (await actor_of_token(request.state.db, token))[0]


async def get_login(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> tuple[Actor, str]:
    """The caller and the id of the session its token belongs to."""
    return await actor_of_token(request.state.db, token)


async def actor_of_token(session: AsyncSession, token: str | None) -> tuple[Actor, str]:
    """The caller a bearer token names, and its session's id: 401 without a valid token of a
    live session (ended, expired, suspended, or of an account or role that is not)."""
    if not token:
        raise Unauthenticated("send 'Authorization: Bearer <token>' (POST /v1/auth/token)")
    actor, session_id = await actor_of(session, token)
    if actor.role not in _ROLES:  # signed, but not a role of this service
        raise Unauthenticated("the access token is not valid")
    return actor, session_id


def roles(*allowed: str) -> Callable[..., Awaitable[Actor]]:
    """A dependency admitting only callers of the given roles (403 for the others)."""

    async def check(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> Actor:
        # not a sub-dependency: one level less for FastAPI to solve per request
        actor = (await actor_of_token(request.state.db, token))[0]
        if actor.role not in allowed:
            raise Forbidden(msg("this operation is for: {roles}", roles=[term(role) for role in allowed]))
        return actor

    return check


def link_or_roles(*allowed: str) -> Callable[..., Awaitable[Actor]]:
    """For what the service hands out as links (pictures, downloads): a signed link's own
    caller (`?u=&r=&exp=&sig=`, app/core/links.py; 403 when tampered with or expired, or when
    its account is suspended or gone since), or else
    the bearer token's. With `allowed`, only callers of those roles (403 for the others)."""

    async def check(
        request: Request,
        token: Annotated[str | None, Depends(oauth2)],
        u: Annotated[str | None, Query(max_length=40, description="signed link: for whom")] = None,
        r: Annotated[str | None, Query(max_length=20, description="signed link: the role")] = None,
        exp: Annotated[int | None, Query(description="signed link: expiry (Unix seconds)")] = None,
        sig: Annotated[str | None, Query(max_length=100, description="signed link: its signature")] = None,
    ) -> Actor:
        if sig is not None or u is not None or exp is not None or r is not None:
            account_id, role = links.verify(request.url.path, request.query_params.multi_items())
            actor = await link_actor(request.state.db, account_id, role)
        else:
            actor = (await actor_of_token(request.state.db, token))[0]
        if allowed and actor.role not in allowed:
            raise Forbidden(msg("this operation is for: {roles}", roles=[term(role) for role in allowed]))
        return actor

    return check


class PageParams:
    def __init__(self, limit: int, cursor: str | None) -> None:
        self.limit = limit
        self.cursor = cursor


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size (max 100)")] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")] = None,
) -> PageParams:
    # dependencies are coroutines: a plain function or a class would run in the thread pool
    return PageParams(limit, cursor)


Session = Annotated[AsyncSession, Depends(get_session)]
ReadSession = Annotated[AsyncSession, Depends(get_read_session)]
CurrentActor = Annotated[Actor, Depends(get_actor)]
CurrentLogin = Annotated[tuple[Actor, str], Depends(get_login)]
Page = Annotated[PageParams, Depends(page_params)]
Operator = Annotated[Actor, Depends(roles("operator"))]
