"""Demo data for `make run` (`python -m app seed-demo`): the base accounts, then each module's
demo step as `app/modules.py` lists them. Idempotent: running it twice changes nothing."""

from __future__ import annotations

from app import modules
from app.core.config import get_settings
from app.db.session import make_engine, make_sessionmaker
from app.demo.accounts import base_accounts


async def seed() -> list[str]:
    modules.install()
    engine = make_engine(get_settings().database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            accounts, lines = await base_accounts(session)
            for step in modules.DEMO_STEPS:
                lines.extend(await step(session, accounts))
            await session.commit()
    finally:
        await engine.dispose()
    return lines
