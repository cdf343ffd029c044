"""The state-machine core: one `transitions` machine per workflow, fired on persisted rows.

A `Workflow` is built once at import from a list of `Rule`s. Each rule is one transition with
the roles that may fire it and a guard (the caller's relation to the row, state-data checks).
Several rules may share an action and a source; `when` picks the destination at firing time
(e.g. the last shop's decision moves a signup on, earlier ones keep it waiting).

The machine decides; domain services do the effects (money, timers, notifications) after
`fire` returns, inside the same database transaction. Concurrency comes from the database:
rows are loaded `FOR UPDATE` (PostgreSQL) or under `BEGIN IMMEDIATE` (SQLite), and the
`version` column is SQLAlchemy's `version_id_col` (set here when a transition fires), so a lost
race is a 409, never a double effect. Effects that are only rows (products, deadlines,
messages) can ride along with the event: `create(..., also=...)`, `fire(..., also=...)`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from transitions import Machine

from app.db.base import new_id
from app.db.bulk import Part, insert_together
from app.db.models.platform import Event, EventRecipient, TransitionRecord
from app.domain import clock
from app.domain.errors import Forbidden, InvalidTransition, NotFound

_HISTORY, _EVENTS, _RECIPIENTS = TransitionRecord.__table__, Event.__table__, EventRecipient.__table__
TRANSITIONS_TOTAL = Counter("lc_transitions_total", "State transitions fired", ["machine", "action"])

SYSTEM_ROLE = "system"


@dataclass(frozen=True)
class Actor:
    id: str
    role: str

    @property
    def is_system(self) -> bool:
        return self.role == SYSTEM_ROLE


SYSTEM = Actor("system", SYSTEM_ROLE)


@dataclass
class Ctx:
    """What a guard sees: the row, who acts, business time, and the action's input."""

    row: Any
    actor: Actor
    now: datetime
    extra: dict[str, Any] = field(default_factory=dict)


Guard = Callable[[Ctx], bool]


@dataclass(frozen=True)
class Rule:
    action: str
    source: tuple[str, ...]
    dest: str | None  # None: an internal transition (the state stays)
    roles: frozenset[str]
    guard: Guard | None = None  # may this actor fire it on this row now? (drives allowed_actions)
    when: Guard | None = None  # which of several rules applies, decided at firing time
    description: str = ""

    def permits(self, ctx: Ctx) -> bool:
        return ctx.actor.role in self.roles and (self.guard is None or self.guard(ctx))


def rule(action: str, source: str | Iterable[str], dest: str | None, roles: str | Iterable[str], *,
         guard: Guard | None = None, when: Guard | None = None, description: str = "") -> Rule:
    sources = (source,) if isinstance(source, str) else tuple(source)
    role_set = frozenset((roles,) if isinstance(roles, str) else roles)
    return Rule(action, sources, dest, role_set, guard, when, description)


_IRREGULAR = {"withdraw": "withdrawn", "check-out": "checked_out", "end": "ended", "fulfil": "fulfilled",
              "submit": "submitted"}
_ROLE_WORDS = {"merchant", "platform", "creator", "operator", "agency", "provider"}


def _past(verb: str) -> str:
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb in ("cancel", "label"):
        return verb + "led"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def event_suffix(action: str) -> str:
    """The past tense of an action, for event types: `accept` → `accepted`,
    `merchant-approve` → `merchant_approved`, `grant-traffic` → `traffic_granted`."""
    if action in _IRREGULAR:
        return _IRREGULAR[action]
    words = action.split("-")
    prefix = [words.pop(0)] if len(words) > 1 and words[0] in _ROLE_WORDS else []
    verb, objects = words[0], words[1:]
    return "_".join(prefix + objects + [_past(verb)])


class Workflow:
    """One machine definition: states, rules, the row model, and who an event concerns."""

    def __init__(self, name: str, *, model: type, states: list[str], initial: str, rules: list[Rule],
                 parties: Callable[[Any], Iterable[str]], final_states: Iterable[str] = (),
                 description: str = "") -> None:
        self.name = name
        self.model = model
        self.states = states
        self.initial = initial
        self.rules = rules
        self.parties = parties
        self.final_states = frozenset(final_states)
        self.description = description
        self.machine = Machine(model=None, states=states, initial=initial, auto_transitions=False,
                               send_event=True, name=name)
        for r in rules:
            conditions = [self._condition(r)]
            self.machine.add_transition(r.action, list(r.source), r.dest, conditions=conditions)
        self.actions = list(dict.fromkeys(r.action for r in rules))
        self._for_update = (select(model).where(model.id == bindparam("id")).with_for_update()
                            .execution_options(populate_existing=True))
        unknown = {s for r in rules for s in (*r.source, r.dest) if s is not None} - set(states)
        if unknown:
            raise ValueError(f"{name}: unknown states {unknown}")
        WORKFLOWS[name] = self

    @staticmethod
    def _condition(r: Rule) -> Callable[[Any], bool]:
        def check(event_data) -> bool:
            ctx: Ctx = event_data.kwargs["ctx"]
            return r.permits(ctx) and (r.when is None or r.when(ctx))

        return check

    # -- questions -------------------------------------------------------------------------
    def rules_for(self, action: str) -> list[Rule]:
        return [r for r in self.rules if r.action == action]

    def allowed_actions(self, row: Any, actor: Actor, now: datetime) -> list[str]:
        ctx = Ctx(row, actor, now)
        return [a for a in self.actions
                if any(row.state in r.source and r.permits(ctx) for r in self.rules_for(a))]

    def can(self, row: Any, action: str, actor: Actor, now: datetime) -> bool:
        ctx = Ctx(row, actor, now)
        return any(row.state in r.source and r.permits(ctx) for r in self.rules_for(action))

    def roles_of(self, action: str) -> set[str]:
        return {role for r in self.rules_for(action) for role in r.roles}

    # -- firing ----------------------------------------------------------------------------
    async def create(self, session: AsyncSession, row: Any, actor: Actor, *, now: datetime | None = None,
                     state: str | None = None, reason: Any = None, event_data: dict | None = None,
                     also: Iterable[Part] = ()) -> Any:
        """Persist a new row in its initial state (or `state`), with history and an event.
        `also`: rows of other tables that go out in the event's statement (`insert_together`);
        they may point at the new row (it is flushed first then)."""
        now = now or await clock.now(session)
        row.state = state or self.initial
        row.version = 1
        session.add(row)
        also = list(also)
        if also:
            await session.flush()
        await self._record(session, row, None, "create", actor, now, reason, "created", event_data, also)
        return row

    async def fire(self, session: AsyncSession, row: Any, action: str, actor: Actor, *,
                   now: datetime | None = None, reason: Any = None, extra: dict[str, Any] | None = None,
                   event_data: dict | None = None, changes: dict[str, Any] | None = None,
                   also: Iterable[Part] = ()) -> None:
        """Check and apply `action` to `row` (already loaded for update): the history row and the
        outbox event are written at once; the row's UPDATE (`WHERE version = <read version>`)
        goes out with the session's next flush. Raises 403 when the actor's role may never fire
        it, 409 `invalid_transition` when it is not allowed now. `changes` are column values written in
        the same UPDATE as the new state (one statement, one version step), only if it moves;
        `also` are rows of other tables written with the event (`insert_together`)."""
        now = now or await clock.now(session)
        candidates = self.rules_for(action)
        if not candidates:
            raise NotFound(f"unknown action '{action}'")
        if actor.role not in self.roles_of(action):
            raise Forbidden(f"a {actor.role} may not '{action}' a {self.name}")
        ctx = Ctx(row, actor, now, dict(extra or {}))
        from_state = row.state
        if not self.machine.events[action].transitions.get(from_state) or not \
                self.machine.events[action].trigger(row, ctx=ctx):
            raise InvalidTransition(action, from_state, self.allowed_actions(row, actor, now))
        for column, value in (changes or {}).items():
            setattr(row, column, value)
        row.version = row.version + 1  # internal transitions bump the version too
        TRANSITIONS_TOTAL.labels(self.name, action).inc()
        await self._record(session, row, from_state, action, actor, now, reason, event_suffix(action), event_data,
                           also)

    async def create_many(self, session: AsyncSession, rows: list[Any], actor: Actor, *,
                          now: datetime | None = None) -> None:
        """Persist many new rows in the initial state (a batch job's): their history rows,
        events and recipients go out in one statement per 1,000 rows."""
        now = now or await clock.now(session)
        for row in rows:
            row.state, row.version = self.initial, 1
        session.add_all(rows)
        for start in range(0, len(rows), 1000):
            history: list[dict] = []
            events: list[dict] = []
            recipients: list[dict] = []
            for row in rows[start:start + 1000]:
                h, e, r = self._outbox_rows(row, None, "create", actor, now, None, "created", None)
                history.append(h)
                events.append(e)
                recipients.extend(r)
            await insert_together(session, (_HISTORY, history), (_EVENTS, events), (_RECIPIENTS, recipients))

    def _outbox_rows(self, row: Any, from_state: str | None, action: str, actor: Actor, now: datetime,
                     reason: Any, suffix: str, event_data: dict | None) -> tuple[dict, dict, list[dict]]:
        event_id = new_id("evt")
        history = {"id": new_id("trn"), "machine": self.name, "entity_id": row.id, "from_state": from_state,
                   "to_state": row.state, "action": action, "actor_id": actor.id, "actor_role": actor.role,
                   "reason": reason, "at": now}
        event = {"id": event_id, "type": f"{self.name}.{suffix}", "occurred_at": now, "data": {
            "id": row.id, "machine": self.name, "action": action, "from_state": from_state, "to_state": row.state,
            "version": row.version, "actor_id": actor.id, "actor_role": actor.role, **(event_data or {})}}
        recipients = [{"event_id": event_id, "account_id": p} for p in sorted({p for p in self.parties(row) if p})]
        return history, event, recipients

    async def _record(self, session: AsyncSession, row: Any, from_state: str | None, action: str,
                      actor: Actor, now: datetime, reason: Any, suffix: str, event_data: dict | None,
                      also: Iterable[Part] = ()) -> None:
        """The history row, the outbox event, its recipients and the `also` rows: one round trip
        (`insert_together`)."""
        history, event, recipients = self._outbox_rows(row, from_state, action, actor, now, reason, suffix,
                                                       event_data)
        await insert_together(session, (_HISTORY, [history]), (_EVENTS, [event]), (_RECIPIENTS, recipients), *also)

    # -- loading ---------------------------------------------------------------------------
    async def load_for_update(self, session: AsyncSession, entity_id: str) -> Any:
        row = await session.scalar(self._for_update, {"id": entity_id})
        if row is None:
            raise NotFound(f"{self.name} {entity_id} not found")
        return row


WORKFLOWS: dict[str, Workflow] = {}


async def history(session: AsyncSession, machine: str, entity_id: str) -> list[TransitionRecord]:
    rows = await session.scalars(
        select(TransitionRecord)
        .where(TransitionRecord.machine == machine, TransitionRecord.entity_id == entity_id)
        .order_by(TransitionRecord.at, TransitionRecord.id))
    return list(rows)
