"""The registry (`app/modules.py`) is the one list the service runs from."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_registry_alone_gives_every_machine_timer_handler_and_job():
    # a fresh interpreter: nothing else of the app imported, no app built
    probe = (
        "import app.modules as m, app.state.registry as r;"
        "print(sorted(m.WORKFLOWS)); print(sorted(m.TIMER_HANDLERS)); print(sorted(p.name for p in m.PERIODIC));"
        "print(len(m.DEMO_STEPS), len(m.ROUTERS), len(r.WORKFLOWS))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    machines, handlers, jobs, counts = (eval(line) if i < 3 else line for i, line in enumerate(out))
    assert len(machines) == 13 and "task_order" in machines and "redemption" in machines
    assert ("task_order", "expire") in handlers and ("cooperation", "end") in handlers and len(handlers) == 7
    assert jobs == ["broker-relay", "sms-relay", "sweeper", "webhook-relay"]
    assert counts == "5 13 0"  # five demo steps, thirteen routers (events has two); importing installs nothing


async def test_the_registry_lists_what_the_app_serves(client, factory):
    from app.modules import WORKFLOWS

    op = await factory.operator()
    listed = (await client.get("/v1/state-machines", headers=op.headers)).json()
    assert {m["name"] for m in listed} == set(WORKFLOWS)


def test_every_timer_handler_is_marked_with_a_machine_of_its_module():
    from app.modules import MODULES

    for module in MODULES:
        names = {w.name for w in module.machines}
        for handler in module.timer_handlers:
            assert handler.timer[0] in names, (module.name, handler.__name__)
