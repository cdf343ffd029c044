from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import CurrentActor, Operator, Session
from app.api.routing import TxRoute
from app.domain import accounts
from app.domain.accounts import AccountCreate, AccountOut, AccountPatch, TokenOut

router = APIRouter(prefix="/v1", route_class=TxRoute)


@router.post("/auth/token", response_model=TokenOut, tags=["auth"], name="issue_token")
async def issue_token(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: Session) -> TokenOut:
    """OAuth2 password grant: `username` and `password` as form fields → a bearer token."""
    return await accounts.authenticate(session, form.username, form.password)


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


@router.get("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"], name="get_account")
async def get_account(account_id: str, session: Session, actor: CurrentActor) -> AccountOut:
    """The public card of an account; the owner and operators also see private fields."""
    return await accounts.account_view(session, actor, account_id)


@router.patch("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"], name="update_account")
async def patch_account(account_id: str, body: AccountPatch, session: Session, actor: Operator) -> AccountOut:
    return await accounts.update_account(session, actor, account_id, body)
