"""In-process domain signals, so the core never imports a workflow module.

`app/modules.py` lists each module's handlers (`(signal, handler)` pairs) and the composition
root connects them (`install`); importing a module connects nothing. The core sends the signal
inside the request's transaction, so a handler's writes commit or roll back with the change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
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

SIGNALS = (product_changed, account_changed, live_session_started, live_session_ended, sales_orders_ingested)


def install(handlers: Iterable[tuple[Signal, Handler]]) -> None:
    """Connect exactly these handlers, in this order (idempotent)."""
    for signal in SIGNALS:
        signal.handlers.clear()
    for signal, handler in handlers:
        signal.connect(handler)
