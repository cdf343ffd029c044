"""The registry: every module of the service, what it serves and what it runs.

One entry per module: its routers (in the order their routes are served), its machines, its
timer handlers, its signal handlers, its periodic jobs and its demo step. `main.py` serves the
routers, `workers.py` runs the periodic jobs, the CLI and the demo read it; `install()` hands the
machines, timer and signal handlers down to the layers that fire them. Nothing registers itself
by being imported: a module that is not listed here does not run.

A sixth module is one more `Module(...)` below (docs/DEVELOPING.md, "Adding a module")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from app.api import accounts, campaigns, events, incentives, ingest, live_bases, outreach, platform, products, task_orders, wallet
from app.demo import campaigns as campaigns_demo
from app.demo import incentives as incentives_demo
from app.demo import live_bases as live_bases_demo
from app.demo import outreach as outreach_demo
from app.demo import task_orders as task_orders_demo
from app.domain import broker, notifications, signals, webhooks
from app.domain import task_orders as task_orders_domain
from app.domain import wallet as wallet_domain
from app.domain.campaigns import handlers as campaigns_handlers
from app.domain.incentives import service as incentives_service
from app.domain.live_bases import check_ins as live_bases_check_ins
from app.domain.live_bases import pool as live_bases_pool
from app.state import registry
from app.state.campaign import CAMPAIGN
from app.state.campaign_signup import CAMPAIGN_SIGNUP
from app.state.check_in import CHECK_IN
from app.state.cooperation import COOPERATION
from app.state.core import Workflow
from app.state.creator_binding import CREATOR_BINDING
from app.state.dispute import DISPUTE
from app.state.incentive_statement import INCENTIVE_STATEMENT
from app.state.provider_contract import PROVIDER_CONTRACT
from app.state.redemption import REDEMPTION
from app.state.registry import TimerHandler
from app.state.shop_binding import SHOP_BINDING
from app.state.task_order import TASK_ORDER
from app.state.timers import sweep
from app.state.top_up import TOP_UP
from app.state.voucher import VOUCHER
from app.workers import Periodic

DemoStep = Callable[[Any, dict[str, Any]], Awaitable[list[str]]]


@dataclass(frozen=True)
class Module:
    name: str
    routers: tuple[APIRouter, ...] = ()
    machines: tuple[Workflow, ...] = ()
    timer_handlers: tuple[TimerHandler, ...] = ()  # each marked `@on_timer(machine, action)`
    signal_handlers: tuple[tuple[signals.Signal, signals.Handler], ...] = ()
    periodic: tuple[Periodic, ...] = ()
    demo_step: DemoStep | None = None  # async (session, accounts_by_username) -> lines to print
    event_types: tuple[str, ...] = ()  # events it writes beyond its machines' (which list their own)


MODULES: tuple[Module, ...] = (
    Module("accounts", routers=(accounts.router,)),
    Module("products", routers=(products.router,)),
    Module("ingest", routers=(ingest.router,)),
    Module("platform", routers=(platform.router,), periodic=(Periodic("sweeper", None, sweep),)),
    Module("wallet", routers=(wallet.router,), machines=(TOP_UP,), timer_handlers=(wallet_domain.expire_on_timer,)),
    Module(
        "task_orders",
        routers=(task_orders.router,),
        machines=(TASK_ORDER, DISPUTE),
        timer_handlers=(task_orders_domain.expire_on_timer, task_orders_domain.auto_approve_on_timer),
        signal_handlers=(
            (signals.live_session_started, task_orders_domain.on_live_session_started),
            (signals.live_session_ended, task_orders_domain.on_live_session_ended),
        ),
        demo_step=task_orders_demo.demo_step,
    ),
    Module(
        "campaigns",
        routers=(campaigns.router,),
        machines=(CAMPAIGN, CAMPAIGN_SIGNUP),
        timer_handlers=(campaigns_handlers._expire,),
        signal_handlers=(
            (signals.live_session_started, campaigns_handlers._on_live_started),
            (signals.live_session_ended, campaigns_handlers._on_live_ended),
        ),
        demo_step=campaigns_demo.demo_step,
    ),
    Module(
        "live_bases",
        routers=(live_bases.router,),
        machines=(CREATOR_BINDING, SHOP_BINDING, CHECK_IN, COOPERATION),
        timer_handlers=(live_bases_check_ins._check_out_at_midnight, live_bases_check_ins._end_cooperation),
        signal_handlers=(
            (signals.product_changed, live_bases_pool._on_product_changed),
            (signals.account_changed, live_bases_pool._on_account_changed),
        ),
        demo_step=live_bases_demo.demo_step,
    ),
    Module("outreach", routers=(outreach.router,), demo_step=outreach_demo.demo_step),
    Module(
        "incentives",
        routers=(incentives.router,),
        machines=(PROVIDER_CONTRACT, INCENTIVE_STATEMENT, VOUCHER, REDEMPTION),
        timer_handlers=(incentives_service._fulfil_on_use_date,),
        demo_step=incentives_demo.demo_step,
    ),
    Module(
        "events",
        routers=(events.router, events.stream_router),
        event_types=("webhook.disabled",),
        periodic=(
            Periodic("webhook-relay", 1.0, webhooks.deliver_due),
            Periodic("sms-relay", 1.0, notifications.send_queued_sms),
            Periodic("broker-relay", 0.5, broker.relay_due),  # a no-op without LC_EVENT_BROKER_URL
        ),
    ),
    Module("operations", routers=(platform.ops,)),  # health, readiness, metrics: served last
)

ROUTERS: tuple[APIRouter, ...] = tuple(r for m in MODULES for r in m.routers)
WORKFLOWS: dict[str, Workflow] = {w.name: w for m in MODULES for w in m.machines}
# `timer` is the attribute `on_timer` sets on a handler function (mypy types no function attributes)
TIMER_HANDLERS: dict[tuple[str, str], TimerHandler] = {h.timer: h for m in MODULES for h in m.timer_handlers}  # type: ignore[attr-defined]
SIGNAL_HANDLERS: tuple[tuple[signals.Signal, signals.Handler], ...] = tuple(p for m in MODULES for p in m.signal_handlers)
PERIODIC: tuple[Periodic, ...] = tuple(p for m in MODULES for p in m.periodic)
DEMO_STEPS: tuple[DemoStep, ...] = tuple(m.demo_step for m in MODULES if m.demo_step is not None)
# the event catalogue: every type an event feed or webhook can carry (`EventType` in OpenAPI)
EVENT_TYPES: tuple[str, ...] = tuple(
    dict.fromkeys([*(t for w in WORKFLOWS.values() for t in w.event_types), *(t for m in MODULES for t in m.event_types)])
)


def install() -> None:
    """Hand the machines, timer handlers and signal handlers to the layers that fire them.
    Called by the composition root (`create_app`, the CLI, the demo); idempotent."""
    registry.install(WORKFLOWS.values(), TIMER_HANDLERS)
    signals.install(SIGNAL_HANDLERS)
