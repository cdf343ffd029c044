"""`python -m app …` / `live-collab …`: serve, migrate, openapi, seed-demo, sweep, create-operator,
broker setup, events tail."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import typer

from app.core.config import get_settings

cli = typer.Typer(help="Live Collab service commands.", no_args_is_help=True)


@cli.callback()
def _settings_first() -> None:
    """Every command starts by reading the settings: a bad one is one line on stderr and exit 2."""
    from app.startup import settings_or_exit

    settings_or_exit()


@cli.command()
def migrate() -> None:
    """Apply every Alembic migration to the database LC_DATABASE_URL names."""
    from app.db.migrate import upgrade

    upgrade()
    typer.echo("database migrated to head")


@cli.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, migrate_first: bool = True) -> None:
    """Start the HTTP service (migrating first unless --no-migrate-first)."""
    import uvicorn

    from app.startup import ConfigError, check_database, fail

    settings = get_settings()
    try:
        check_database(settings.database_url)
    except ConfigError as error:
        fail(error)
    if migrate_first:
        migrate()
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        log_config=None,
        # with the h11 parser, what it buffers before the headers end: the request line and the
        # headers the app allows (HeaderLimitMiddleware answers 431 beyond them), not h11's 16 KiB
        h11_max_incomplete_event_size=settings.max_headers_total_bytes + 16 * 1024,
    )


@cli.command()
def openapi(output: str = typer.Option("-", help="file to write; - for standard output")) -> None:
    """Write the OpenAPI document the service serves at /openapi.json (what `make clients` generates from)."""
    import json
    from pathlib import Path

    from app.main import create_app

    text = json.dumps(create_app().openapi(), ensure_ascii=False, indent=2) + "\n"
    if output == "-":
        typer.echo(text, nl=False)
    else:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@cli.command("seed-demo")
def seed_demo() -> None:
    """Load demo data: one account of each role, products, a funded merchant (idempotent)."""
    from app.demo.seed import seed

    for line in asyncio.run(seed()):
        typer.echo(line)


@cli.command()
def sweep() -> None:
    """Fire every due timer once and exit (cron-style; safe beside running replicas)."""
    from app import modules
    from app.db.session import make_engine, make_sessionmaker
    from app.state.timers import sweep as run_sweep

    modules.install()  # the machines and timer handlers the sweeper fires

    async def run() -> int:
        engine = make_engine(get_settings().database_url)
        try:
            return await run_sweep(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    typer.echo(f"fired {asyncio.run(run())} timers")


@cli.command("create-operator")
def create_operator(username: str, password: str = typer.Option(..., prompt=True, hide_input=True)) -> None:
    """Create an operator account (no-op if the username exists)."""
    from app.db.session import make_engine, make_sessionmaker
    from app.domain.accounts import ensure_operator

    async def run() -> bool:
        engine = make_engine(get_settings().database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                created = await ensure_operator(session, username, password)
                await session.commit()
                return created
        finally:
            await engine.dispose()

    typer.echo("operator created" if asyncio.run(run()) else "that username exists already")


@cli.command("compute-incentives")
def compute_incentives(program_id: str, month: str) -> None:
    """Compute (or recompute) the draft incentive statements of MONTH (YYYY-MM), with a progress bar."""
    from rich.progress import Progress

    from app import modules
    from app.core.errors import DomainError
    from app.db.session import make_engine, make_sessionmaker
    from app.domain.incentives import compute_month

    modules.install()

    async def run() -> object:
        engine = make_engine(get_settings().database_url)
        try:
            with Progress() as bar:
                task = bar.add_task(f"statements {month}", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                async with make_sessionmaker(engine)() as session:
                    result = await compute_month(session, program_id, month, progress=progress)
                    await session.commit()
                    return result
        finally:
            await engine.dispose()

    try:
        result: Any = asyncio.run(run())
    except DomainError as exc:
        typer.echo(f"error ({exc.code}): {exc.detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{result.month}: {result.statements} statements, {result.eligible} eligible, {result.total_fen} fen in vouchers")


broker_cli = typer.Typer(help='The event broker (LC_EVENT_BROKER_URL): docs/scaling.md, "Broker".', no_args_is_help=True)
events_cli = typer.Typer(help="Events on the broker.", no_args_is_help=True)
cli.add_typer(broker_cli, name="broker")
cli.add_typer(events_cli, name="events")


def _publishers(url: str | None) -> list[Any]:
    from app.domain.broker import publisher_for

    settings = get_settings()
    urls = [u.strip() for u in (url or settings.event_broker_url or "").split(",") if u.strip()]
    if not urls:
        typer.echo("no broker: set LC_EVENT_BROKER_URL (nats://… or amqp://…) or pass --url", err=True)
        raise typer.Exit(2)
    return [
        publisher_for(
            u,
            stream=settings.event_broker_stream,
            exchange=settings.event_broker_exchange,
            subject_prefix=settings.event_broker_subject_prefix,
        )
        for u in urls
    ]


@broker_cli.command("setup")
def broker_setup(url: str | None = typer.Option(None, help="instead of LC_EVENT_BROKER_URL")) -> None:
    """Create the JetStream stream / the RabbitMQ exchange if missing (idempotent)."""

    async def run() -> list[str]:
        lines = []
        for publisher in _publishers(url):
            try:
                lines.append(await publisher.setup())
            finally:
                await publisher.close()
        return lines

    for line in asyncio.run(run()):
        typer.echo(line)


@events_cli.command("tail")
def events_tail(
    subject: str | None = typer.Option(None, help="a subject pattern, NATS syntax (default: <prefix>.>)"),
    url: str | None = typer.Option(None, help="instead of LC_EVENT_BROKER_URL (the first one)"),
    from_start: bool = typer.Option(False, help="NATS: every message the stream keeps, then new ones"),
    count: int = typer.Option(0, help="stop after this many messages (0: never)"),
    timeout: float = typer.Option(0.0, help="stop after this many seconds (0: never)"),
) -> None:
    """Print events as they arrive on the broker: one line each, `<subject> <event JSON>`."""

    async def run() -> None:
        publisher = _publishers(url)[0]
        seen = 0

        async def follow() -> None:
            nonlocal seen

            def ready() -> None:
                typer.echo(f"tailing {subject or publisher.subject_prefix + '.>'} on {publisher.target}", err=True)

            async for message in publisher.tail(subject, from_start=from_start, on_ready=ready):
                typer.echo(f"{message.subject} {message.body.decode()}")
                seen += 1
                if count and seen >= count:
                    return

        try:
            if timeout:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(follow(), timeout)
            else:
                await follow()
        finally:
            await publisher.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
