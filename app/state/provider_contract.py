"""Machine `provider_contract`: a provider proposes, the merchant accepts or declines; either
party ends an active contract."""

from __future__ import annotations

from app.db.models.incentives import ProviderContract
from app.db.repositories.incentives import ContractRecord
from app.state.core import Ctx, Workflow, rule


def _is_merchant(ctx: Ctx) -> bool:
    return ctx.row.merchant_id == ctx.actor.id


def _is_party(ctx: Ctx) -> bool:
    return ctx.actor.id in (ctx.row.merchant_id, ctx.row.provider_id)


PROVIDER_CONTRACT = Workflow(
    "provider_contract",
    model=ProviderContract,
    initial="proposed",
    record=ContractRecord,
    states=["proposed", "active", "declined", "ended"],
    final_states=["declined", "ended"],
    parties=lambda row: [row.provider_id, row.merchant_id],
    description="服务商后台签约: a service provider's contract with a merchant",
    rules=[
        rule(
            "accept",
            "proposed",
            "active",
            "merchant",
            guard=_is_merchant,
            description="the merchant accepts the proposal",
            event="accepted",
        ),
        rule(
            "decline",
            "proposed",
            "declined",
            "merchant",
            guard=_is_merchant,
            description="the merchant declines the proposal",
            event="declined",
        ),
        rule(
            "end",
            "active",
            "ended",
            ["merchant", "service_provider"],
            guard=_is_party,
            description="either party ends the cooperation (with a reason)",
            event="ended",
        ),
    ],
)
