"""In-process domain signals, so the core never imports a workflow module.

A module connects a handler at import (`@product_changed.connect`); the core sends the signal
inside the request's transaction, so a handler's writes commit or roll back with the change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

Handler = Callable[..., Awaitable[None]]


class Signal:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[Handler] = []

    def connect(self, handler: Handler) -> Handler:
        self.handlers.append(handler)
        return handler

    async def send(self, session: AsyncSession, **payload: Any) -> None:
        for handler in self.handlers:
            await handler(session, **payload)


product_changed = Signal("product_changed")  # product=Product
account_changed = Signal("account_changed")  # account=Account, fields=set[str]
live_session_started = Signal("live_session_started")  # live_session=LiveSession
live_session_ended = Signal("live_session_ended")  # live_session=LiveSession
sales_orders_ingested = Signal("sales_orders_ingested")  # orders=list[SalesOrder]
