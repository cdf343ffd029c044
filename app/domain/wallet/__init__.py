"""The wallet module: wallets, the double-entry ledger and holds (`ledger.py`, reusable by any module),
balances and ledger lines (`service.py`), top-ups (`top_ups.py`), their downloads (`exports.py`);
request and answer shapes in `schemas.py`. The names other modules use are re-exported here."""

from __future__ import annotations

from app.domain.wallet.exports import EXPORT_HEADER, EXPORT_LIMIT, export_rows, to_csv, to_xlsx
from app.domain.wallet.ledger import (
    AVAILABLE,
    FROZEN,
    Movement,
    balance,
    freeze,
    fund,
    hold_of,
    lock_wallets,
    pay,
    post,
    release,
    split,
    transfer,
)
from app.domain.wallet.schemas import EntryOut, TopUpCreate, TopUpDecision, TopUpMethod, TopUpOut, WalletOut
from app.domain.wallet.service import entries, resolve_owner, wallet_of
from app.domain.wallet.top_ups import (
    GatewayResult,
    InstantGateway,
    PaymentGateway,
    PendingGateway,
    create_top_up,
    decide_top_up,
    expire_on_timer,
    get_top_up,
    list_top_ups,
    payment_gateway,
    top_up_out,
)

__all__ = [
    "AVAILABLE",
    "EXPORT_HEADER",
    "EXPORT_LIMIT",
    "EntryOut",
    "FROZEN",
    "GatewayResult",
    "InstantGateway",
    "Movement",
    "PaymentGateway",
    "PendingGateway",
    "TopUpCreate",
    "TopUpDecision",
    "TopUpMethod",
    "TopUpOut",
    "WalletOut",
    "balance",
    "create_top_up",
    "decide_top_up",
    "entries",
    "expire_on_timer",
    "export_rows",
    "freeze",
    "fund",
    "get_top_up",
    "hold_of",
    "list_top_ups",
    "lock_wallets",
    "pay",
    "payment_gateway",
    "post",
    "release",
    "resolve_owner",
    "split",
    "to_csv",
    "to_xlsx",
    "top_up_out",
    "transfer",
    "wallet_of",
]
