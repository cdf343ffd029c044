"""Schemathesis' stateful phase over the OpenAPI links (spec/client-contract.md: "Operations that
create an entity declare OpenAPI links to its reads and actions"): as a merchant, sequences of
calls that follow the declared links (create a product, then read or change it by the id the
answer gave; create a top-up, then read it, its history, act on it) — more than zero links
followed, and no answer is a server error or out of its schema."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from sqlalchemy.pool import NullPool

from app.core.config import get_settings
from app.db.base import Base
from app.db.session import make_engine
from app.main import create_app
from tests.conftest import _TMP, IS_POSTGRES

# The links are the same on every database: one run (in the SQLite pass of `make test`).
pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="the stateful phase runs in the SQLite pass")

URL = f"sqlite+aiosqlite:///{_TMP}/schemathesis-stateful.db"
engine = make_engine(URL, poolclass=NullPool)
app = create_app(get_settings(), engine=engine)
TOKEN: dict[str, str] = {}
STEPS = int(os.environ.get("LC_SCHEMATHESIS_STATEFUL_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


async def _prepare() -> None:
    from app.domain.accounts import AccountCreate, Profile, create_account
    from app.domain.accounts.sessions import start_session

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with app.state.sessionmaker() as session:
        account = await create_account(
            session,
            AccountCreate(
                role="merchant",
                username="stateful-merchant",
                password="password-123",
                display_name="merchant",
                profile=Profile.model_validate({"shop_name": "S"}),
            ),
        )
        TOKEN["merchant"] = (await start_session(session, account.id, "merchant")).access_token
        await session.commit()


def test_the_stateful_phase_follows_the_links():
    asyncio.run(_prepare())
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=r"^/v1/(products|wallet/top-ups)")
    followed: Counter[str] = Counter()
    followed_ok: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    base = schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc,valid-type]
        def step(self, input: Any) -> Any:
            output = super().step(input)
            statuses[output.response.status_code] += 1
            transition = input.transition
            if transition is not None and not transition.is_inferred and input.is_applied:
                followed[transition.id] += 1
                if output.response.status_code < 300:
                    followed_ok[transition.id] += 1
            return output

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {"Authorization": f"Bearer {TOKEN['merchant']}"}}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Workflow.run(
        settings=settings(
            max_examples=STEPS,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    assert sum(followed.values()) > 0, f"no declared link was followed (answers: {dict(statuses)})"
    assert sum(followed_ok.values()) > 0, f"no followed link was answered with success: {dict(followed)}"
    assert not [s for s in statuses if s >= 500], statuses
    print(f"links followed: {dict(followed)}; answers: {dict(statuses)}")
