"""The machines and timer handlers the service runs.

`app/modules.py` declares them, module by module; the state layer cannot import it (it sits
above), so the composition root (`create_app`, the CLI, the demo) hands them down once with
`install(...)`. Importing a workflow module never fills these tables."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.state.core import Workflow

# (machine, action) -> handler(session, row, now); without one the timer's action is simply fired.
TimerHandler = Callable[[AsyncSession, Any, datetime], Awaitable[None]]

WORKFLOWS: dict[str, Workflow] = {}
TIMER_HANDLERS: dict[tuple[str, str], TimerHandler] = {}


def install(workflows: Iterable[Workflow], timer_handlers: dict[tuple[str, str], TimerHandler]) -> None:
    """Replace what runs (idempotent: installing the same registry twice changes nothing)."""
    by_name: dict[str, Workflow] = {}
    for workflow in workflows:
        if by_name.setdefault(workflow.name, workflow) is not workflow:
            raise ValueError(f"two machines named {workflow.name}")
    unknown = {machine for machine, _ in timer_handlers} - set(by_name)
    if unknown:
        raise ValueError(f"timer handlers for unknown machines {sorted(unknown)}")
    WORKFLOWS.clear()
    WORKFLOWS.update(by_name)
    TIMER_HANDLERS.clear()
    TIMER_HANDLERS.update(timer_handlers)
