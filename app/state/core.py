"""The state-machine core: one `transitions` machine per workflow, fired on persisted rows.

A `Workflow` is built once at import from a list of `Rule`s. Each rule is one transition with
the roles that may fire it and a guard (the caller's relation to the row, state-data checks).
Several rules may share an action and a source; `when` picks the destination at firing time
(e.g. the last shop's decision moves a signup on, earlier ones keep it waiting).

The machine decides; domain services do the effects (money, timers, notifications) inside the
same database transaction. Two kinds of rows:

- records (frozen dataclasses from `app/db/repositories/`, for workflows built with
  `record=`): `fire` returns the new record and writes the transition as one conditional
  `UPDATE … SET state, version = version + 1, <changes> WHERE id AND version = <read> RETURNING`
  with its history row, outbox event, recipients and the `also` rows behind it — one statement
  on PostgreSQL (`write_gated`), the UPDATE first and the inserts after it elsewhere. A lost
  race (the version moved since the read) is a 409, never a double effect; the version grows by
  exactly one per transition and the event carries it. `creation` gives a new entity's row with
  its history, event and recipients as rows for one write.
- ORM rows (the modules not yet on repositories): `fire` changes the row in the session; the
  `version` column is SQLAlchemy's `version_id_col`, so the flush's UPDATE says
  `WHERE version = <read>`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from transitions import Machine

from app.core.enums import OneOf, camel
from app.core.errors import DomainError, Forbidden, InvalidTransition, NotFound, PreconditionFailed
from app.core.i18n import msg, term
from app.db.base import Base, new_id, table_of
from app.db.bulk import Part, insert_together, write_gated
from app.db.models.platform import Event, EventRecipient, TransitionRecord
from app.db.repositories import entities
from app.db.repositories import platform as platform_repo
from app.db.repositories.platform import TransitionRow
from app.state import clock

_HISTORY, _EVENTS, _RECIPIENTS = table_of(TransitionRecord), table_of(Event), table_of(EventRecipient)
# The version a request's `If-Match` names, and the path it addressed (set by TxRoute): the
# caller's first transition of the entity whose id is in that path checks it before anything
# is decided (412 precondition_failed when the entity moved on since the caller's screen).
EXPECTED_VERSION: ContextVar[tuple[int, str] | None] = ContextVar("expected_version", default=None)


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
    fired: Rule | None = None  # set by the machine: the rule whose transition it took


# A guard's verdict: True (this actor may fire it on this row now), False (not now: 409
# `invalid_transition`), or the refusal itself — a DomainError with its own status, code and
# detail (409 `already_bound`, 429 `rate_limited`, 403 for someone who may never fire it), so
# the rule is written once: firing raises it, `allowed_actions` leaves the action out.
Verdict = bool | DomainError
Guard = Callable[[Ctx], Verdict]


def _passes(verdict: Verdict) -> bool:
    return not isinstance(verdict, DomainError) and bool(verdict)


@dataclass(frozen=True)
class Rule:
    action: str
    source: tuple[str, ...]
    dest: str | None  # None: an internal transition (the state stays)
    roles: frozenset[str]
    event: str  # the event type's suffix: `accept` writes `<machine>.accepted`
    guard: Guard | None = None  # may this actor fire it on this row now? (drives allowed_actions)
    when: Guard | None = None  # which of several rules applies, decided at firing time
    description: str = ""

    def verdict(self, ctx: Ctx) -> Verdict:
        if ctx.actor.role not in self.roles:
            return False
        return True if self.guard is None else self.guard(ctx)

    def permits(self, ctx: Ctx) -> bool:
        return _passes(self.verdict(ctx))


def rule(
    action: str,
    source: str | Iterable[str],
    dest: str | None,
    roles: str | Iterable[str],
    *,
    event: str,
    guard: Guard | None = None,
    when: Guard | None = None,
    description: str = "",
) -> Rule:
    """One transition. `event` names what it writes to the outbox (`<machine>.<event>`), in
    the past tense clients read in their feeds: `accepted`, `traffic_granted`, `checked_out`."""
    sources = (source,) if isinstance(source, str) else tuple(source)
    role_set = frozenset((roles,) if isinstance(roles, str) else roles)
    if not event or not event.replace("_", "").isalpha() or event != event.lower():
        raise ValueError(f"rule {action!r}: event {event!r} must be a lower_snake_case word")
    return Rule(action, sources, dest, role_set, event, guard, when, description)


class _Subject:
    """What the `transitions` machine moves when it decides on a record (records are frozen)."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


class Workflow:
    """One machine definition: states, rules, the row model (its table), the record type its
    repository returns (`record=`; None for a module still on the ORM), and who an event
    concerns."""

    def __init__(
        self,
        name: str,
        *,
        model: type[Base],
        states: list[str],
        initial: str,
        rules: list[Rule],
        parties: Callable[[Any], Iterable[str]],
        final_states: Iterable[str] = (),
        description: str = "",
        record: type[Any] | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.record = record
        self.table = table_of(model)
        self.states = states
        self.initial = initial
        self.rules = rules
        self.parties = parties
        self.final_states = frozenset(final_states)
        self.description = description
        self.machine = Machine(model=None, states=states, initial=initial, auto_transitions=False, send_event=True, name=name)
        for r in rules:
            conditions: list[str | Callable[..., bool | None]] = [self._condition(r)]
            self.machine.add_transition(r.action, list(r.source), r.dest, conditions=conditions)
        self.actions = list(dict.fromkeys(r.action for r in rules))
        # the closed sets clients see, named after the machine (`TaskOrderState`, …): the
        # representation's `state` and `allowed_actions`, and the event catalogue
        self.event_types = list(dict.fromkeys([f"{name}.created", *(f"{name}.{r.event}" for r in rules)]))
        self.state_enum = OneOf(f"{camel(name)}State", states)
        self.action_enum = OneOf(f"{camel(name)}Action", self.actions)
        # built once: the rules of each action, their roles, and per state the rules that leave it
        # (in the order of `actions`), so questions asked on every answer are lookups
        self._by_action = {a: tuple(r for r in rules if r.action == a) for a in self.actions}
        self._roles = {a: frozenset(role for r in self._by_action[a] for role in r.roles) for a in self.actions}
        leaving = {
            state: [(a, tuple(r for r in self._by_action[a] if state in r.source)) for a in self.actions] for state in states
        }
        self._leaving = {state: [(a, rs) for a, rs in pairs if rs] for state, pairs in leaving.items()}
        self._for_update = (
            select(model).where(self.table.c.id == bindparam("id")).with_for_update().execution_options(populate_existing=True)
        )
        unknown = {s for r in rules for s in (*r.source, r.dest) if s is not None} - set(states)
        if unknown:
            raise ValueError(f"{name}: unknown states {unknown}")

    @staticmethod
    def _condition(r: Rule) -> Callable[[Any], bool]:
        def check(event_data) -> bool:
            ctx: Ctx = event_data.kwargs["ctx"]
            if r.permits(ctx) and (r.when is None or _passes(r.when(ctx))):
                ctx.fired = r
                return True
            return False

        return check

    # -- questions -------------------------------------------------------------------------
    def rules_for(self, action: str) -> tuple[Rule, ...]:
        return self._by_action.get(action, ())

    def allowed_actions(self, row: Any, actor: Actor, now: datetime, extra: dict[str, Any] | None = None) -> list[str]:
        """The actions this actor's firing would pass now (bodies aside). `extra`: the facts
        beyond the row some guards read, as the domain hands them to `fire`."""
        ctx = Ctx(row, actor, now, extra or {})
        return [a for a, rules in self._leaving.get(row.state, ()) if any(r.permits(ctx) for r in rules)]

    def can(self, row: Any, action: str, actor: Actor, now: datetime, extra: dict[str, Any] | None = None) -> bool:
        ctx = Ctx(row, actor, now, extra or {})
        return any(row.state in r.source and r.permits(ctx) for r in self.rules_for(action))

    def refusal(self, row: Any, action: str, actor: Actor, now: datetime, extra: dict[str, Any] | None = None) -> DomainError:
        """Why `action` fails now: the refusal a guard gave, else 409 `invalid_transition`."""
        ctx = Ctx(row, actor, now, dict(extra or {}))
        for r in self.rules_for(action):
            if row.state in r.source and actor.role in r.roles:
                verdict = r.verdict(ctx)
                if isinstance(verdict, DomainError):
                    return verdict
        return InvalidTransition(action, row.state, self.allowed_actions(row, actor, now, extra))

    def roles_of(self, action: str) -> frozenset[str]:
        return self._roles.get(action, frozenset())

    def expect_version(self, row: Any, actor: Actor, now: datetime, extra: dict[str, Any] | None = None) -> None:
        """412 `precondition_failed` when the request's `If-Match` names another version of
        `row` than it has: the caller's own change of the entity its screen showed (an action,
        or a PATCH/PUT of it). Timers fired first by the system move the version, so a screen
        from before them is stale. Checked once per request (the first change of that entity)."""
        expected = EXPECTED_VERSION.get()
        if expected is not None and actor.role != SYSTEM_ROLE and row.id in expected[1]:
            EXPECTED_VERSION.set(None)
            if row.version != expected[0]:
                raise PreconditionFailed(expected[0], row.version, row.state, self.allowed_actions(row, actor, now, extra))

    # -- firing ----------------------------------------------------------------------------
    async def create(
        self,
        session: AsyncSession,
        row: Any,
        actor: Actor,
        *,
        now: datetime | None = None,
        state: str | None = None,
        reason: Any = None,
        event_data: dict | None = None,
        also: Iterable[Part] = (),
    ) -> Any:
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

    async def fire(
        self,
        session: AsyncSession,
        row: Any,
        action: str,
        actor: Actor,
        *,
        now: datetime | None = None,
        reason: Any = None,
        extra: dict[str, Any] | None = None,
        event_data: dict | None = None,
        changes: dict[str, Any] | None = None,
        also: Iterable[Part] = (),
    ) -> Any:
        """Check and apply `action` to `row` (already loaded for update): the history row and the
        outbox event are written at once; the row's UPDATE (`WHERE version = <read version>`)
        goes out with the session's next flush. Raises 403 when the actor's role may never fire
        it, 409 `invalid_transition` when it is not allowed now. `changes` are column values written in
        the same UPDATE as the new state (one statement, one version step), only if it moves;
        `also` are rows of other tables written with the event (`insert_together`)."""
        now = now or await clock.now(session)
        self.expect_version(row, actor, now, extra)
        if self.record is not None and isinstance(row, self.record):
            return await self._fire_record(
                session, self.record, row, action, actor, now, reason, extra, event_data, changes or {}, also
            )
        from_state = row.state
        fired = self._decide(row, row, action, actor, now, extra)
        for column, value in (changes or {}).items():
            setattr(row, column, value)
        row.version = row.version + 1  # internal transitions bump the version too
        TRANSITIONS_TOTAL.labels(self.name, action).inc()
        await self._record(session, row, from_state, action, actor, now, reason, fired.event, event_data, also)
        return row

    def _decide(self, row: Any, subject: Any, action: str, actor: Actor, now: datetime, extra: dict[str, Any] | None) -> Rule:
        """Let the machine move `subject` (the ORM row itself, or a `_Subject` for a record) and
        answer the rule it took: 403 when the actor's role may never fire `action`, the guard's
        refusal or 409 `invalid_transition` when it is not allowed now."""
        if not self.rules_for(action):
            raise NotFound(msg("unknown action '{action}'", action=action))
        if actor.role not in self.roles_of(action):
            raise Forbidden(
                msg("a {role} may not '{action}' a {entity}", role=term(actor.role), action=action, entity=term(self.name))
            )
        ctx = Ctx(row, actor, now, dict(extra or {}))
        event = self.machine.events[action]
        if not event.transitions.get(row.state) or not event.trigger(subject, ctx=ctx) or ctx.fired is None:
            raise self.refusal(row, action, actor, now, extra)
        return ctx.fired

    async def _fire_record(
        self,
        session: AsyncSession,
        record: type[Any],
        row: Any,
        action: str,
        actor: Actor,
        now: datetime,
        reason: Any,
        extra: dict[str, Any] | None,
        event_data: dict | None,
        changes: dict[str, Any],
        also: Iterable[Part],
    ) -> Any:
        subject = _Subject(row.state)
        fired = self._decide(row, subject, action, actor, now, extra)
        moved = replace(row, state=subject.state, version=row.version + 1, **changes)
        history, event, recipients = self._outbox_rows(moved, row.state, action, actor, now, reason, fired.event, event_data)
        gate = entities.transition_gate(self.table, tuple(changes))
        params = {
            "g_id": row.id,
            "g_seen": row.version,
            "g_state": moved.state,
            "g_version": moved.version,
            **{f"g_{c}": v for c, v in changes.items()},
        }
        if (
            await write_gated(session, gate, params, (_HISTORY, [history]), (_EVENTS, [event]), (_RECIPIENTS, recipients), *also)
            is None
        ):
            current = await entities.entity(session, self.table, record, row.id)
            if current is None:
                raise NotFound(msg("{entity} {entity_id} not found", entity=term(self.name), entity_id=row.id))
            # another request moved it since it was read: answer as if this one had come second
            raise InvalidTransition(action, current.state, self.allowed_actions(current, actor, now, extra))
        TRANSITIONS_TOTAL.labels(self.name, action).inc()
        return moved

    def creation(
        self,
        values: dict[str, Any],
        actor: Actor,
        now: datetime,
        *,
        state: str | None = None,
        reason: Any = None,
        event_data: dict | None = None,
    ) -> tuple[Any, list[Part]]:
        """A new entity of a record workflow: its record, and its row, history row, event and
        recipients as parts for one write (`insert_together`, or a gate's `write_gated`).
        `values` are the row's columns (its id included) but `state` and `version`."""
        if self.record is None:
            raise TypeError(f"{self.name} is not a record workflow: its rows are created through the ORM")
        row = self.record(**values, state=state or self.initial, version=1)
        history, event, recipients = self._outbox_rows(row, None, "create", actor, now, reason, "created", event_data)
        return row, [
            (self.table, [{**values, "state": row.state, "version": 1}]),
            (_HISTORY, [history]),
            (_EVENTS, [event]),
            (_RECIPIENTS, recipients),
        ]

    async def create_many(self, session: AsyncSession, rows: list[Any], actor: Actor, *, now: datetime | None = None) -> None:
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
            for row in rows[start : start + 1000]:
                h, e, r = self._outbox_rows(row, None, "create", actor, now, None, "created", None)
                history.append(h)
                events.append(e)
                recipients.extend(r)
            await insert_together(session, (_HISTORY, history), (_EVENTS, events), (_RECIPIENTS, recipients))

    def _outbox_rows(
        self,
        row: Any,
        from_state: str | None,
        action: str,
        actor: Actor,
        now: datetime,
        reason: Any,
        suffix: str,
        event_data: dict | None,
    ) -> tuple[dict, dict, list[dict]]:
        event_id = new_id("evt")
        history = {
            "id": new_id("trn"),
            "machine": self.name,
            "entity_id": row.id,
            "from_state": from_state,
            "to_state": row.state,
            "action": action,
            "actor_id": actor.id,
            "actor_role": actor.role,
            "reason": reason,
            "at": now,
        }
        event = {
            "id": event_id,
            "type": f"{self.name}.{suffix}",
            "occurred_at": now,
            "data": {
                "id": row.id,
                "machine": self.name,
                "action": action,
                "from_state": from_state,
                "to_state": row.state,
                "version": row.version,
                "actor_id": actor.id,
                "actor_role": actor.role,
                **(event_data or {}),
            },
        }
        recipients = [{"event_id": event_id, "account_id": p} for p in sorted({p for p in self.parties(row) if p})]
        return history, event, recipients

    async def _record(
        self,
        session: AsyncSession,
        row: Any,
        from_state: str | None,
        action: str,
        actor: Actor,
        now: datetime,
        reason: Any,
        suffix: str,
        event_data: dict | None,
        also: Iterable[Part] = (),
    ) -> None:
        """The history row, the outbox event, its recipients and the `also` rows: one round trip
        (`insert_together`)."""
        history, event, recipients = self._outbox_rows(row, from_state, action, actor, now, reason, suffix, event_data)
        await insert_together(session, (_HISTORY, [history]), (_EVENTS, [event]), (_RECIPIENTS, recipients), *also)

    # -- loading ---------------------------------------------------------------------------
    async def load_locked(self, session: AsyncSession, entity_id: str) -> Any:
        if self.record is not None:
            row = await entities.entity(session, self.table, self.record, entity_id, lock=True)
        else:
            row = await session.scalar(self._for_update, {"id": entity_id})
        if row is None:
            raise NotFound(msg("{entity} {entity_id} not found", entity=term(self.name), entity_id=entity_id))
        return row

    async def lock_unless_busy(self, session: AsyncSession, entity_id: str) -> Any | None:
        """The row locked, or None when another transaction holds it (`FOR UPDATE SKIP LOCKED`):
        the sweeper never waits for a request's lock, so it can take no part in a deadlock
        through the entity. NotFound when there is no such row."""
        if self.record is None:
            return await self.load_locked(session, entity_id)
        row = await entities.entity_unless_locked(session, self.table, self.record, entity_id)
        if row is None and await entities.entity(session, self.table, self.record, entity_id) is None:
            raise NotFound(msg("{entity} {entity_id} not found", entity=term(self.name), entity_id=entity_id))
        return row


async def history(session: AsyncSession, machine: str, entity_id: str) -> list[TransitionRow]:
    """Every transition of one entity, oldest first."""
    return await platform_repo.history_of(session, machine, entity_id)
