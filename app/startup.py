"""Start-up that explains itself (security.md): bad configuration stops the service with one line
on stderr naming the setting, and a non-zero exit, never a traceback.

`settings_or_exit()` is how the CLI and `app.main:app` get their settings; `check(settings)` holds
the rules no single setting can check (the bootstrap operator must be a valid account);
`check_database(url)` tells an unreachable database apart before the server starts."""

from __future__ import annotations

import asyncio
import sys
from typing import NoReturn

from pydantic import ValidationError

from app.core.config import Settings, get_settings

EXIT_CONFIG = 2


class ConfigError(Exception):
    """A setting that stops start-up: `str()` is the one line that says so."""

    def __init__(self, setting: str | None, message: str) -> None:
        self.setting = setting
        self.message = message
        super().__init__(f"configuration error: {setting}: {message}" if setting else f"configuration error: {message}")


def _env_name(field: object) -> str:
    return f"LC_{str(field).upper()}"


def _from_validation(exc: ValidationError, names: dict[str, str] | None = None) -> ConfigError:
    first = exc.errors()[0]
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    loc = [str(part) for part in first.get("loc", ()) if part != "__root__"]
    if not loc:  # a rule of several settings: its message names them
        return ConfigError(None, message)
    setting = (names or {}).get(loc[0]) or _env_name(loc[0])
    return ConfigError(setting, message)


def load_settings() -> Settings:
    """The process's settings; ConfigError when one of them is not acceptable."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise _from_validation(exc) from None
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Rules beyond each setting's own type: the bootstrap operator is an account like any other."""
    username, password = settings.bootstrap_operator_username, settings.bootstrap_operator_password
    if bool(username) != bool(password):
        missing = "LC_BOOTSTRAP_OPERATOR_PASSWORD" if username else "LC_BOOTSTRAP_OPERATOR_USERNAME"
        raise ConfigError(missing, "must be set together with the other LC_BOOTSTRAP_OPERATOR_* setting")
    if username and password:
        from app.domain.accounts import AccountCreate, Role

        try:
            AccountCreate(role=Role.operator, username=username, password=password, display_name="Operator")
        except ValidationError as exc:
            names = {"username": "LC_BOOTSTRAP_OPERATOR_USERNAME", "password": "LC_BOOTSTRAP_OPERATOR_PASSWORD"}
            raise _from_validation(exc, names) from None
        from app.core.passwords import weakness

        weak = weakness(password)
        if weak is not None:  # the rules every account's password follows (security.md)
            raise ConfigError("LC_BOOTSTRAP_OPERATOR_PASSWORD", weak.render())


def check_database(url: str, timeout: float = 10.0) -> None:
    """Connect once: an unreachable database is a ConfigError naming LC_DATABASE_URL (without
    the URL, which may hold a password)."""
    from sqlalchemy import text

    from app.db.session import make_engine

    async def probe() -> None:
        engine = make_engine(url, pool_size=1)
        try:
            async with asyncio.timeout(timeout), engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(probe())
    except Exception as exc:  # any failure to connect, whatever the driver calls it
        reason = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc).splitlines()[0][:200] or type(exc).__name__
        raise ConfigError("LC_DATABASE_URL", f"cannot reach the database ({reason})") from None


def fail(error: ConfigError) -> NoReturn:
    """One line on stderr, exit status 2."""
    print(str(error), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        fail(error)
