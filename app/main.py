"""The ASGI application: `uvicorn app.main:app`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from app import modules, startup, workers
from app.api import errors, openapi
from app.api.middleware import BodyLimitMiddleware, HeaderLimitMiddleware, RequestContextMiddleware, SecurityHeadersMiddleware
from app.api.routing import TxRoute
from app.core.config import Settings
from app.core.logging import configure as configure_logging
from app.db.base import Base
from app.db.replica import Replica
from app.db.session import make_engine, make_sessionmaker, warm_pool

log = logging.getLogger("app")

TAGS = [
    {"name": "auth", "description": "OAuth2 password grant → bearer token (the Authorize button)."},
    {"name": "accounts", "description": "Accounts of every role and their profiles."},
    {"name": "products", "description": "Merchants' products."},
    {"name": "ingest", "description": "Facts pushed by the upstream commerce systems (role `platform`)."},
    {"name": "wallet", "description": "Wallets, ledger lines and top-ups (财务管理)."},
    {"name": "task orders", "description": "Slot-fee bookings held in escrow (坑位费任务)."},
    {"name": "campaigns", "description": "Platform reward campaigns (直播间奖励)."},
    {"name": "live bases", "description": "Agencies' live bases, bindings, product pool, check-in."},
    {"name": "outreach", "description": "Conversations and contact views under weekly quotas (建联)."},
    {"name": "incentives", "description": "Service-provider contracts, monthly vouchers, redemption."},
    {"name": "events", "description": "Events, webhooks and in-app notifications."},
    {"name": "state machines", "description": "The workflow machines, their states and diagrams."},
    {"name": "admin", "description": "Operator tools: the test clock, SMS log, policies."},
    {"name": "operations", "description": "Health, readiness and metrics."},
]


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None, *, engine=None) -> FastAPI:
    settings = settings or startup.load_settings()
    startup.check(settings)  # ConfigError: a bootstrap operator that breaks the account rules
    configure_logging(settings.log_level, settings.log_json)
    modules.install()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.bootstrap_operator_username and settings.bootstrap_operator_password:
            from app.domain.accounts import ensure_operator

            async with app.state.sessionmaker() as session:
                if await ensure_operator(session, settings.bootstrap_operator_username, settings.bootstrap_operator_password):
                    log.info("bootstrap operator created", extra={"username": settings.bootstrap_operator_username})
                await session.commit()
        # What start-up built lives as long as the process: keep it out of the collector's full
        # passes, which otherwise stop every request in flight for 20-150 ms each
        # (bench/request_cpu.py --gc-freeze, with gc callbacks timing the collections).
        await warm_pool(app.state.engine, settings.db_pool_warm, Base.metadata)
        gc.collect()
        gc.freeze()
        # Requests allocate many short-lived objects; CPython's default (a young collection
        # every 700 net allocations) examined the objects of the 32 requests in flight over
        # and over and promoted them early: at 50,000 the server spent 12 % less CPU per
        # transition under wrk (make bench: 2.25 -> 1.97-2.00 x the bare's), same peak RSS.
        gc.set_threshold(settings.gc_young_threshold, 20, 20)
        background = None
        if settings.run_sweeper:
            background = asyncio.create_task(
                workers.run_forever(app.state.sessionmaker, settings.sweeper_interval_seconds, modules.PERIODIC)
            )
        try:
            yield
        finally:
            if background:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            if app.state.replica is not None:
                await app.state.replica.dispose()
            if settings.redis_url:
                from app.db.redis import close_all

                await close_all()
            if owns_engine:
                await app.state.engine.dispose()

    app = FastAPIOffline(
        title="Live Collab",
        version="0.1.0",
        description="Collaboration back end for live-stream commerce: task orders with escrow, reward "
        "campaigns, live bases, outreach quotas and service-provider incentives.\n\n"
        "Authenticate with `POST /v1/auth/token` (the **Authorize** button), then call the "
        "`/v1` operations. Errors are RFC 9457 `application/problem+json` with a stable `code`.",
        openapi_tags=TAGS,
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    owns_engine = engine is None
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url, pool_size=settings.db_pool_size)
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    app.state.replica = (
        Replica(app.state.engine, settings.database_replica_url, settings.replica_max_lag_seconds, settings.db_replica_pool_size)
        if settings.database_replica_url
        else None
    )

    errors.install(app)
    openapi.install(app, event_types=modules.EVENT_TYPES)
    # The routers carry their own prefix and tags, so their routes are added flat: FastAPI ≥ 0.16x
    # keeps an included router as one opaque route, which tools walking `app.routes` cannot see.
    for router in modules.ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                route.operation_id = route.operation_id or _operation_id(route)
            if isinstance(route, TxRoute):
                route.literal_prefix = route.path.split("{", 1)[0]
            app.router.routes.append(route)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After", "Idempotent-Replayed", "X-Request-ID", "ETag", "X-Data-As-Of", "Content-Language"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        HeaderLimitMiddleware, max_header_bytes=settings.max_header_bytes, max_total_bytes=settings.max_headers_total_bytes
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app


app: FastAPI  # declared, not bound: the module's __getattr__ builds it


def __getattr__(name: str):
    # `app.main:app` is built on first access, so importing this module has no side effects.
    # Bad configuration ends the process here with one line on stderr (app/startup.py), which is
    # what `uvicorn app.main:app` shows instead of a traceback.
    if name == "app":
        global app
        app = create_app(startup.settings_or_exit())
        return app
    raise AttributeError(name)
