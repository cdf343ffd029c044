from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import CurrentActor, CurrentLogin, Operator, Session
from app.api.routing import TxRoute
from app.core.links import client_address
from app.domain import accounts
from app.domain.accounts import AccountCreate, AccountOut, AccountPatch, PasswordChange, Suspension, TokenOut

router = APIRouter(prefix="/v1", route_class=TxRoute)


@router.post("/auth/token", response_model=TokenOut, tags=["auth"], name="issue_token")
async def issue_token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], session: Session) -> TokenOut:
    """OAuth2 password grant: `username` and `password` as form fields → a bearer token of a new
    session. 401 `invalid_credentials`, 401 `account_suspended`; after 10 failures of a username
    in 15 minutes (or 100 from one address) 429 `rate_limited` with `Retry-After`."""
    return await accounts.login(session, form.username, form.password, client_address(request.scope))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"], name="logout")
async def logout(session: Session, login: CurrentLogin) -> Response:
    """End the caller's session: its token is 401 `unauthenticated` from now on, on every replica."""
    await accounts.logout(session, login[1])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/accounts", response_model=AccountOut, status_code=status.HTTP_201_CREATED, tags=["accounts"], name="create_account"
)
async def create_account(body: AccountCreate, session: Session, actor: Operator) -> AccountOut:
    return await accounts.open_account(session, actor, body)


@router.get("/accounts/me", response_model=AccountOut, tags=["accounts"], name="get_my_account")
async def get_me(session: Session, actor: CurrentActor) -> AccountOut:
    return await accounts.account_view(session, actor, actor.id)


@router.patch("/accounts/me", response_model=AccountOut, tags=["accounts"], name="update_my_account")
async def patch_me(body: AccountPatch, session: Session, actor: CurrentActor) -> AccountOut:
    return await accounts.update_account(session, actor, actor.id, body)


@router.post("/accounts/me/password", status_code=status.HTTP_204_NO_CONTENT, tags=["accounts"], name="change_my_password")
async def change_password(request: Request, body: PasswordChange, session: Session, login: CurrentLogin) -> Response:
    """Change the password with the current one (403 `wrong_password`; 422 `weak_password` for a
    new one under 10 characters or common; a wrong one counts as a failed login, and the login
    limits apply: 429 `rate_limited`). Every other session of the account ends."""
    await accounts.change_password(session, login[0], login[1], body, client_address(request.scope))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"], name="get_account")
async def get_account(account_id: str, session: Session, actor: CurrentActor) -> AccountOut:
    """The public card of an account; the owner and operators also see private fields."""
    return await accounts.account_view(session, actor, account_id)


@router.patch("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"], name="update_account")
async def patch_account(account_id: str, body: AccountPatch, session: Session, actor: Operator) -> AccountOut:
    return await accounts.update_account(session, actor, account_id, body)


@router.post("/accounts/{account_id}/suspend", response_model=AccountOut, tags=["accounts"], name="suspend_account")
async def suspend(account_id: str, body: Suspension, session: Session, actor: Operator) -> AccountOut:
    """The account cannot log in (401 `account_suspended`) and all its sessions end at once."""
    return await accounts.suspend(session, actor, account_id, body)


@router.post("/accounts/{account_id}/reinstate", response_model=AccountOut, tags=["accounts"], name="reinstate_account")
async def reinstate(account_id: str, session: Session, actor: Operator) -> AccountOut:
    """Lift a suspension: the account may log in again."""
    return await accounts.reinstate(session, actor, account_id)
