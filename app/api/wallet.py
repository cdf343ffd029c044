"""Routes of the wallet module: balances, ledger lines, top-ups."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from app.api.deps import CurrentActor, Operator, Page, ReadSession, Session, roles
from app.api.routing import TxRoute, replica_read
from app.domain import wallet
from app.domain.schemas import PageOut, history_list
from app.domain.wallet import EntryOut, TopUpCreate, TopUpDecision, TopUpOut, WalletOut
from app.domain.wallet.schemas import TopUpState
from app.state.core import Actor
from app.state.top_up import TOP_UP

router = APIRouter(route_class=TxRoute)
TAGS: list[str | Enum] = ["wallet"]
Merchant = Annotated[Actor, Depends(roles("merchant"))]
AccountId = Annotated[str | None, Query(max_length=40, description="operators: whose wallet")]


@router.get("/v1/wallet", response_model=WalletOut, tags=TAGS, name="get_wallet")
async def get_wallet(session: Session, actor: CurrentActor, account_id: AccountId = None) -> WalletOut:
    """The caller's balances: `available_fen`, `frozen_fen` (held for task orders) and their
    sum `total_fen`. Merchants and creators; an operator names the account with `?account_id=`."""
    return await wallet.wallet_for(session, actor, account_id)


@router.get("/v1/wallet/entries", response_model=PageOut[EntryOut], tags=TAGS, name="list_wallet_entries")
async def list_entries(session: Session, actor: CurrentActor, page: Page, account_id: AccountId = None) -> PageOut[EntryOut]:
    """The ledger lines of the caller's wallet, newest first: each with its bucket
    (`available` or `frozen`), signed amount, the bucket's balance after it, and what caused it."""
    return await wallet.entries_for(session, actor, account_id, limit=page.limit, cursor=page.cursor)


@router.post("/v1/wallet/top-ups", response_model=TopUpOut, status_code=status.HTTP_201_CREATED, tags=TAGS, name="create_top_up")
async def create_top_up(body: TopUpCreate, session: Session, actor: Merchant) -> TopUpOut:
    """A merchant recharges its wallet. `online` goes through the payment gateway (outside
    production it succeeds at once); `bank_transfer` (对公转账) stays `pending` until an operator
    confirms or rejects it, and expires after 7 days."""
    return await wallet.create_top_up(session, actor, body)


@router.get("/v1/wallet/top-ups", response_model=PageOut[TopUpOut], tags=TAGS, name="list_top_ups")
async def list_top_ups(
    session: Session,
    actor: CurrentActor,
    page: Page,
    state: Annotated[TopUpState | None, Query()] = None,
    account_id: AccountId = None,
) -> PageOut[TopUpOut]:
    """The recharge history, newest first: a merchant's own; an operator sees all (filter with
    `?state=pending` to find transfers to confirm, `?account_id=`)."""
    return await wallet.list_top_ups(session, actor, state=state, account_id=account_id, limit=page.limit, cursor=page.cursor)


@router.get(
    "/v1/wallet/top-ups/export",
    tags=TAGS,
    name="export_top_ups",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}},
)
@replica_read
async def export_top_ups(
    session: ReadSession,
    actor: CurrentActor,
    format: Annotated[Literal["csv", "xlsx"], Query()] = "csv",
    state: Annotated[TopUpState | None, Query()] = None,
    account_id: AccountId = None,
) -> Response:
    """The recharge history as a file: `csv` (UTF-8 with a BOM, so Excel shows the Chinese) or
    `xlsx`. Same scope and filters as the list; at most 50,000 rows, newest first."""
    download = await wallet.top_ups_download(session, actor, format, state=state, account_id=account_id)
    return Response(
        download.content,
        media_type=download.media_type,
        headers={"Content-Disposition": f'attachment; filename="{download.filename}"'},
    )


@router.get("/v1/wallet/top-ups/{top_up_id}", response_model=TopUpOut, tags=TAGS, name="get_top_up")
async def get_top_up(top_up_id: str, session: Session, actor: CurrentActor) -> TopUpOut:
    """One top-up (its owner or an operator)."""
    return await wallet.get_top_up(session, actor, top_up_id)


@router.post("/v1/wallet/top-ups/{top_up_id}/confirm", response_model=TopUpOut, tags=TAGS, name="confirm_top_up")
async def confirm_top_up(top_up_id: str, session: Session, actor: Operator, body: TopUpDecision | None = None) -> TopUpOut:
    """The operator confirms the money arrived: the wallet's available balance rises by the amount."""
    return await wallet.decide_top_up(session, actor, top_up_id, "confirm", body)


@router.post("/v1/wallet/top-ups/{top_up_id}/reject", response_model=TopUpOut, tags=TAGS, name="reject_top_up")
async def reject_top_up(top_up_id: str, session: Session, actor: Operator, body: TopUpDecision | None = None) -> TopUpOut:
    """The operator rejects a transfer that never arrived; nothing is credited."""
    return await wallet.decide_top_up(session, actor, top_up_id, "reject", body)


@router.get("/v1/wallet/top-ups/{top_up_id}/history", response_model=history_list(TOP_UP), tags=TAGS, name="get_top_up_history")
async def top_up_history(top_up_id: str, session: Session, actor: CurrentActor):
    """Every transition of a top-up."""
    return await wallet.top_up_history(session, actor, top_up_id)
