"""Schemathesis over the whole OpenAPI schema, in process, authenticated as an operator and as
a merchant: no answer is a 500, and every answer matches the schema (status code, content type,
body)."""

from __future__ import annotations

import asyncio
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.pool import NullPool

from app.core.config import get_settings
from app.db.base import Base
from app.db.session import make_engine
from app.main import create_app
from tests.conftest import _TMP, IS_POSTGRES

# The generated requests test the HTTP layer; one pass (on SQLite) per `make test` is enough.
pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="schemathesis runs in the SQLite pass")

URL = f"sqlite+aiosqlite:///{_TMP}/schemathesis.db"
# A fresh connection per call: schemathesis drives the ASGI app from its own event loops.
engine = make_engine(URL, poolclass=NullPool)
app = create_app(get_settings(), engine=engine)
TOKENS: dict[str, str] = {}


async def _prepare() -> None:
    from app.domain.accounts import AccountCreate, Profile, create_account, start_session

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with app.state.sessionmaker() as session:
        for role, profile in [("operator", {}), ("merchant", {"shop_name": "S", "alliance_member": True})]:
            account = await create_account(
                session,
                AccountCreate(
                    role=role,
                    username=f"st-{role}",
                    password="password-123",
                    display_name=role,
                    profile=Profile.model_validate(profile),
                ),
            )
            TOKENS[role] = (await start_session(session, account.id, role)).access_token
            # logout ends the session it is called with: it gets one of its own
            TOKENS[f"{role}-logout"] = (await start_session(session, account.id, role)).access_token
        await session.commit()


asyncio.run(_prepare())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("LC_SCHEMATHESIS_EXAMPLES", "4"))


@pytest.mark.parametrize("role", ["operator", "merchant"])
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case, role):
    token = TOKENS[f"{role}-logout" if case.path == "/v1/auth/logout" else role]
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
