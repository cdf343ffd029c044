"""The reference for `modules.py`: bare asyncpg endpoints doing the same database work as the
service's transaction for each module's hottest transition, with no framework, ORM, validation,
auth or representation reads, in its own `bare_*` tables (same columns, keys, unique and secondary
indexes and foreign keys as the service's tables for the rows these transitions touch).

Like the service, each endpoint is one transaction; it writes the state row, its history row, the
outbox event with its recipients, the timer and the notifications the service writes, and runs
the reads the service's rules need (see `bench/modules.py --sql` for the service's statements).
What the bare endpoints leave out, on purpose: the bearer-token check and its account, the signed
check-in code (a JWT decode, CPU only), request validation, the savepoint around the signup insert
(`INSERT … ON CONFLICT DO NOTHING` on the same partial unique index instead), Prometheus counters
and the reads that build the service's representation (names, allowed actions).

    POST /campaigns/{id}/signups          {creator_id, shop_ids, planned_live_at}
    POST /check-ins                       {creator_id, base_id}
    POST /creators/{id}/contact-views     {merchant_id, field}
    POST /vouchers/{id}/redemptions       {provider_id, merchant_id, amount_fen, use_date}
    POST /seed                            the world (see `seed`)
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from bench.common import answer, lifespan, read_body

DSN = os.environ.get("BENCH_DSN", "")
SH = ZoneInfo("Asia/Shanghai")
RELEASED = ["withdrawn", "merchant_rejected", "platform_rejected", "expired"]
PENDING_CHECK_IN = timedelta(minutes=10)
NOTICE_WORKING_DAYS = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_accounts (id varchar(40) PRIMARY KEY, role varchar(20) NOT NULL,
    display_name varchar(100) NOT NULL, level int, alliance_member boolean, head_annual boolean,
    contact_phone varchar(32), contact_wechat varchar(64));
CREATE TABLE IF NOT EXISTS bare_timers (id varchar(40) PRIMARY KEY, machine varchar(40) NOT NULL,
    entity_id varchar(40) NOT NULL, action varchar(40) NOT NULL, due_at timestamptz NOT NULL,
    UNIQUE (machine, entity_id, action));
CREATE INDEX IF NOT EXISTS ix_bare_timers_due_at ON bare_timers (due_at);
CREATE TABLE IF NOT EXISTS bare_history (id varchar(40) PRIMARY KEY, machine varchar(40) NOT NULL,
    entity_id varchar(40) NOT NULL, from_state varchar(40), to_state varchar(40) NOT NULL, action varchar(40) NOT NULL,
    actor_id varchar(40) NOT NULL, actor_role varchar(20) NOT NULL, reason json, at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_history_entity ON bare_history (machine, entity_id, id);
CREATE TABLE IF NOT EXISTS bare_events (id varchar(40) PRIMARY KEY, type varchar(80) NOT NULL,
    occurred_at timestamptz NOT NULL, data json NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_events_type ON bare_events (type);
CREATE TABLE IF NOT EXISTS bare_event_recipients (event_id varchar(40) REFERENCES bare_events ON DELETE CASCADE,
    account_id varchar(40), PRIMARY KEY (event_id, account_id));
CREATE INDEX IF NOT EXISTS ix_bare_event_recipients_account ON bare_event_recipients (account_id, event_id);
CREATE TABLE IF NOT EXISTS bare_notifications (id varchar(40) PRIMARY KEY,
    account_id varchar(40) NOT NULL REFERENCES bare_accounts, kind varchar(80) NOT NULL, title varchar(200) NOT NULL,
    body text NOT NULL, data json, created_at timestamptz NOT NULL, read_at timestamptz);
CREATE INDEX IF NOT EXISTS ix_bare_notifications_account ON bare_notifications (account_id, id);

CREATE TABLE IF NOT EXISTS bare_campaigns (id varchar(40) PRIMARY KEY, title varchar(200) NOT NULL,
    signup_deadline timestamptz NOT NULL, product_deadline timestamptz NOT NULL, live_from timestamptz NOT NULL,
    live_to timestamptz NOT NULL, state varchar(40) NOT NULL, version int NOT NULL);
CREATE TABLE IF NOT EXISTS bare_campaign_eligible (campaign_id varchar(40) REFERENCES bare_campaigns,
    creator_id varchar(40) REFERENCES bare_accounts, PRIMARY KEY (campaign_id, creator_id));
CREATE TABLE IF NOT EXISTS bare_signups (id varchar(40) PRIMARY KEY,
    campaign_id varchar(40) NOT NULL REFERENCES bare_campaigns, creator_id varchar(40) NOT NULL REFERENCES bare_accounts,
    planned_live_at timestamptz NOT NULL, contact_phone varchar(32), contact_wechat varchar(64), note text,
    created_at timestamptz NOT NULL, state varchar(40) NOT NULL, version int NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_signups_campaign ON bare_signups (campaign_id);
CREATE INDEX IF NOT EXISTS ix_bare_signups_creator_state ON bare_signups (creator_id, state);
CREATE INDEX IF NOT EXISTS ix_bare_signups_state ON bare_signups (state);
CREATE UNIQUE INDEX IF NOT EXISTS uq_bare_signups_slot ON bare_signups (campaign_id, creator_id, planned_live_at)
    WHERE state NOT IN ('withdrawn', 'merchant_rejected', 'platform_rejected', 'expired');
CREATE TABLE IF NOT EXISTS bare_signup_shops (signup_id varchar(40) REFERENCES bare_signups ON DELETE CASCADE,
    shop_id varchar(40) REFERENCES bare_accounts, position int NOT NULL, decision varchar(20) NOT NULL,
    PRIMARY KEY (signup_id, shop_id));
CREATE INDEX IF NOT EXISTS ix_bare_signup_shops_shop ON bare_signup_shops (shop_id);

CREATE TABLE IF NOT EXISTS bare_bases (id varchar(40) PRIMARY KEY, agency_id varchar(40) NOT NULL REFERENCES bare_accounts);
CREATE TABLE IF NOT EXISTS bare_creator_bindings (id varchar(40) PRIMARY KEY, agency_id varchar(40) NOT NULL,
    creator_id varchar(40) NOT NULL, state varchar(40) NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_creator_bindings_creator_state ON bare_creator_bindings (creator_id, state);
CREATE TABLE IF NOT EXISTS bare_cooperations (id varchar(40) PRIMARY KEY, base_id varchar(40) NOT NULL,
    creator_id varchar(40) NOT NULL, ends_at timestamptz NOT NULL, state varchar(40) NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_cooperations_creator_state ON bare_cooperations (creator_id, state);
CREATE TABLE IF NOT EXISTS bare_check_ins (id varchar(40) PRIMARY KEY, base_id varchar(40) NOT NULL REFERENCES bare_bases,
    agency_id varchar(40) NOT NULL REFERENCES bare_accounts, creator_id varchar(40) NOT NULL REFERENCES bare_accounts,
    eligible boolean NOT NULL, reasons json NOT NULL, created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL,
    checked_in_at timestamptz, state varchar(40) NOT NULL, version int NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_check_ins_agency ON bare_check_ins (agency_id);
CREATE INDEX IF NOT EXISTS ix_bare_check_ins_base_checked_in ON bare_check_ins (base_id, checked_in_at);
CREATE INDEX IF NOT EXISTS ix_bare_check_ins_creator_state ON bare_check_ins (creator_id, state);
CREATE INDEX IF NOT EXISTS ix_bare_check_ins_state ON bare_check_ins (state);

CREATE TABLE IF NOT EXISTS bare_quota_policies (effective_week timestamptz PRIMARY KEY,
    merchant_contact_views int NOT NULL);
CREATE TABLE IF NOT EXISTS bare_sales_orders (id varchar(40) PRIMARY KEY, shop_id varchar(40) NOT NULL,
    amount_fen bigint NOT NULL, status varchar(20) NOT NULL, paid_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_sales_orders_shop_paid ON bare_sales_orders (shop_id, paid_at);
CREATE TABLE IF NOT EXISTS bare_quotas (id varchar(40) PRIMARY KEY, account_id varchar(40) NOT NULL REFERENCES bare_accounts,
    week_start timestamptz NOT NULL, kind varchar(20) NOT NULL, counterpart_role varchar(20) NOT NULL,
    quota_limit int NOT NULL, used int NOT NULL, basis_value bigint, created_at timestamptz NOT NULL,
    UNIQUE (account_id, week_start, kind, counterpart_role));
CREATE INDEX IF NOT EXISTS ix_bare_quotas_account ON bare_quotas (account_id);

CREATE TABLE IF NOT EXISTS bare_holidays (day date PRIMARY KEY);
CREATE TABLE IF NOT EXISTS bare_contracts (id varchar(40) PRIMARY KEY, provider_id varchar(40) NOT NULL,
    merchant_id varchar(40) NOT NULL, state varchar(40) NOT NULL, ended_at timestamptz);
CREATE INDEX IF NOT EXISTS ix_bare_contracts_provider ON bare_contracts (provider_id);
CREATE TABLE IF NOT EXISTS bare_vouchers (id varchar(40) PRIMARY KEY, provider_id varchar(40) NOT NULL REFERENCES bare_accounts,
    dimension int NOT NULL, merchant_id varchar(40), remaining_fen bigint NOT NULL, issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL, state varchar(40) NOT NULL, version int NOT NULL);
CREATE TABLE IF NOT EXISTS bare_redemptions (id varchar(40) PRIMARY KEY,
    voucher_id varchar(40) NOT NULL REFERENCES bare_vouchers, provider_id varchar(40) NOT NULL REFERENCES bare_accounts,
    merchant_id varchar(40) NOT NULL REFERENCES bare_accounts, amount_fen bigint NOT NULL, use_date date NOT NULL,
    requested_at timestamptz NOT NULL, state varchar(40) NOT NULL, version int NOT NULL);
CREATE INDEX IF NOT EXISTS ix_bare_redemptions_provider ON bare_redemptions (provider_id);
CREATE INDEX IF NOT EXISTS ix_bare_redemptions_state ON bare_redemptions (state);
CREATE INDEX IF NOT EXISTS ix_bare_redemptions_voucher ON bare_redemptions (voucher_id);
"""
pool: asyncpg.Pool | None = None


def _id() -> str:
    return uuid.uuid4().hex


async def _due_timers(conn, now: datetime, *, entity_id: str | None = None, machines: list[str] | None = None) -> None:
    """The service fires overdue timers before acting (`fire_due`): claim them the same way.
    None is due during the benchmark, as in the service's run."""
    if entity_id is not None:
        await conn.fetch(
            "SELECT id FROM bare_timers WHERE due_at <= $1 AND entity_id = $2 ORDER BY due_at LIMIT 200 FOR UPDATE SKIP LOCKED",
            now,
            entity_id,
        )
    else:
        await conn.fetch(
            "SELECT id FROM bare_timers WHERE due_at <= $1 AND machine = ANY($2) ORDER BY due_at "
            "LIMIT 200 FOR UPDATE SKIP LOCKED",
            now,
            machines,
        )


async def _record(
    conn,
    machine: str,
    entity_id: str,
    from_state: str | None,
    to_state: str,
    action: str,
    actor_id: str,
    actor_role: str,
    now: datetime,
    parties: list[str],
    data: dict,
    reason: object = None,
) -> None:
    """History row, outbox event and its recipients: what the service's `Workflow._record` writes."""
    event_id = _id()
    await conn.execute(
        "INSERT INTO bare_history (id, machine, entity_id, from_state, to_state, action, actor_id, "
        "actor_role, reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        _id(),
        machine,
        entity_id,
        from_state,
        to_state,
        action,
        actor_id,
        actor_role,
        None if reason is None else json.dumps(reason),
        now,
    )
    await conn.execute(
        "INSERT INTO bare_events (id, type, occurred_at, data) VALUES ($1, $2, $3, $4)",
        event_id,
        f"{machine}.{action}d" if action == "create" else f"{machine}.{action}",
        now,
        json.dumps(
            {
                "id": entity_id,
                "machine": machine,
                "action": action,
                "from_state": from_state,
                "to_state": to_state,
                "version": 1,
                "actor_id": actor_id,
                "actor_role": actor_role,
                **data,
            }
        ),
    )
    await conn.executemany(
        "INSERT INTO bare_event_recipients (event_id, account_id) VALUES ($1, $2)",
        [(event_id, p) for p in dict.fromkeys(parties)],
    )


async def _schedule(conn, machine: str, entity_id: str, action: str, due_at: datetime) -> None:
    await conn.execute(
        "INSERT INTO bare_timers (id, machine, entity_id, action, due_at) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (machine, entity_id, action) DO UPDATE SET due_at = EXCLUDED.due_at",
        _id(),
        machine,
        entity_id,
        action,
        due_at,
    )


# -- campaigns -----------------------------------------------------------------------------------
async def create_signup(campaign_id: str, data: dict) -> tuple[int, dict]:
    """A pre-selected creator signs up: claim the campaign's overdue timers; read the campaign
    (published, before `signup_deadline`, `planned_live_at` in the live window), the creator's
    pre-selection, the listed shops (merchants), an active signup at the same time (409), the
    creator's contact; insert the signup (`pending_merchant`, `ON CONFLICT DO NOTHING` on the
    partial unique slot index) and a row per listed shop, its history row, the
    `campaign_signup.created` event with its recipients (creator and shops), the `expire` timer
    at `product_deadline` and one notification per shop."""
    now = datetime.now(UTC)
    creator_id, shop_ids = data["creator_id"], list(data["shop_ids"])
    planned = datetime.fromisoformat(data["planned_live_at"])
    async with pool.acquire() as conn, conn.transaction():
        await _due_timers(conn, now, entity_id=campaign_id)
        campaign = await conn.fetchrow(
            "SELECT title, state, signup_deadline, product_deadline, live_from, live_to FROM bare_campaigns WHERE id = $1",
            campaign_id,
        )
        if campaign is None or campaign["state"] not in ("published", "closed"):
            return 404, {"code": "not_found"}
        if not await conn.fetchval(
            "SELECT creator_id FROM bare_campaign_eligible WHERE campaign_id = $1 AND creator_id = $2", campaign_id, creator_id
        ):
            return 403, {"code": "not_eligible"}
        if campaign["state"] != "published" or now >= campaign["signup_deadline"]:
            return 409, {"code": "deadline_passed"}
        merchants = await conn.fetch("SELECT id FROM bare_accounts WHERE id = ANY($1) AND role = 'merchant'", shop_ids)
        if len(merchants) != len(set(shop_ids)) or len(set(shop_ids)) != len(shop_ids):
            return 422, {"code": "validation_failed"}
        if not campaign["live_from"] <= planned < campaign["live_to"]:
            return 422, {"code": "validation_failed"}
        taken = await conn.fetchval(
            "SELECT id FROM bare_signups WHERE campaign_id = $1 AND creator_id = $2 AND "
            "planned_live_at = $3 AND state <> ALL($4)",
            campaign_id,
            creator_id,
            planned,
            RELEASED,
        )
        if taken:
            return 409, {"code": "duplicate_signup", "signup_id": taken}
        creator = await conn.fetchrow("SELECT contact_phone, contact_wechat FROM bare_accounts WHERE id = $1", creator_id)
        signup_id = _id()
        inserted = await conn.fetchval(
            "INSERT INTO bare_signups (id, campaign_id, creator_id, planned_live_at, contact_phone, contact_wechat, "
            "note, created_at, state, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending_merchant', 1) "
            "ON CONFLICT (campaign_id, creator_id, planned_live_at) WHERE state NOT IN ('withdrawn', "
            "'merchant_rejected', 'platform_rejected', 'expired') DO NOTHING RETURNING id",
            signup_id,
            campaign_id,
            creator_id,
            planned,
            creator["contact_phone"],
            creator["contact_wechat"],
            data.get("note"),
            now,
        )
        if inserted is None:
            return 409, {"code": "duplicate_signup"}
        await conn.executemany(
            "INSERT INTO bare_signup_shops (signup_id, shop_id, position, decision) VALUES ($1, $2, $3, 'pending')",
            [(signup_id, s, i) for i, s in enumerate(shop_ids)],
        )
        await _record(
            conn,
            "campaign_signup",
            signup_id,
            None,
            "pending_merchant",
            "create",
            creator_id,
            "creator",
            now,
            [creator_id, *shop_ids],
            {},
        )
        await _schedule(conn, "campaign_signup", signup_id, "expire", campaign["product_deadline"])
        await conn.executemany(
            "INSERT INTO bare_notifications (id, account_id, kind, title, body, data, created_at) "
            "VALUES ($1, $2, 'campaign_signup.created', '达人报名待确认', $3, $4, $5)",
            [
                (
                    _id(),
                    s,
                    f"A creator listed your shop in a signup to '{campaign['title']}'.",
                    json.dumps({"signup_id": signup_id, "campaign_id": campaign_id}),
                    now,
                )
                for s in shop_ids
            ],
        )
    return 201, {"id": signup_id, "state": "pending_merchant"}


# -- live bases ----------------------------------------------------------------------------------
async def create_check_in(data: dict) -> tuple[int, dict]:
    """A creator scans a base's code: read the base, claim overdue cooperation and check-in
    timers, read the creator (level), an open check-in at this base (409); evaluate the three
    rules (an active strong binding to a head agency, the active cooperations); insert the
    check-in (`pending_confirmation`, or `rejected` with the reasons), its history row, the
    `check_in.created` event with its recipients (creator and agency) and, when pending, the
    `expire` timer 10 minutes later."""
    now = datetime.now(UTC)
    creator_id = data["creator_id"]
    async with pool.acquire() as conn, conn.transaction():
        base = await conn.fetchrow("SELECT id, agency_id FROM bare_bases WHERE id = $1", data["base_id"])
        if base is None:
            return 422, {"code": "invalid_check_in_code"}
        await _due_timers(conn, now, machines=["cooperation", "check_in"])
        level = await conn.fetchval("SELECT level FROM bare_accounts WHERE id = $1", creator_id)
        present = await conn.fetchval(
            "SELECT id FROM bare_check_ins WHERE creator_id = $1 AND base_id = $2 AND state = 'checked_in'",
            creator_id,
            base["id"],
        )
        if present:
            return 409, {"code": "already_checked_in", "check_in_id": present}
        strong = await conn.fetchval(
            "SELECT b.agency_id FROM bare_creator_bindings b JOIN bare_accounts a ON a.id = b.agency_id "
            "WHERE b.creator_id = $1 AND b.state = 'active' AND a.head_annual IS true LIMIT 1",
            creator_id,
        )
        bases = {
            r["base_id"]
            for r in await conn.fetch(
                "SELECT base_id FROM bare_cooperations WHERE creator_id = $1 AND state = 'active' AND ends_at > $2",
                creator_id,
                now,
            )
        }
        reasons = []
        if strong is not None and strong != base["agency_id"]:
            reasons.append("head_agency_other_base")
        if strong is None and base["id"] not in bases and (level or 0) > 4:
            reasons.append("level_too_high")
        if bases - {base["id"]}:
            reasons.append("cooperation_conflict")
        state = "rejected" if reasons else "pending_confirmation"
        check_in_id = _id()
        await conn.execute(
            "INSERT INTO bare_check_ins (id, base_id, agency_id, creator_id, eligible, reasons, created_at, expires_at, "
            "state, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1)",
            check_in_id,
            base["id"],
            base["agency_id"],
            creator_id,
            not reasons,
            json.dumps(reasons),
            now,
            now + PENDING_CHECK_IN,
            state,
        )
        await _record(
            conn,
            "check_in",
            check_in_id,
            None,
            state,
            "create",
            creator_id,
            "creator",
            now,
            [creator_id, base["agency_id"]],
            {"base_id": base["id"]},
            reason={"reasons": reasons} if reasons else None,
        )
        if not reasons:
            await _schedule(conn, "check_in", check_in_id, "expire", now + PENDING_CHECK_IN)
    return 201, {"id": check_in_id, "state": state, "eligibility": {"eligible": not reasons, "reasons": reasons}}


# -- outreach ------------------------------------------------------------------------------------
def _week_start(now: datetime) -> datetime:
    local = now.astimezone(SH).date()
    return datetime.combine(local - timedelta(days=local.weekday()), time(0), tzinfo=SH).astimezone(UTC)


async def view_contact(creator_id: str, data: dict) -> tuple[int, dict]:
    """An alliance merchant views a creator's contact: read the merchant (alliance member) and the
    creator (its phone or WeChat), read this week's contact-view quota row (on the week's first
    use: the policy in force and last week's GMV set its limit, inserted `ON CONFLICT DO NOTHING`
    and read again), then one conditional `UPDATE … SET used = used + 1 WHERE used < quota_limit
    RETURNING used` (429 when none is left). No history, event or notification, as in the service."""
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        merchant = await conn.fetchrow("SELECT id, alliance_member FROM bare_accounts WHERE id = $1", data["merchant_id"])
        if merchant is None or not merchant["alliance_member"]:
            return 403, {"code": "alliance_membership_required"}
        creator = await conn.fetchrow("SELECT role, contact_phone, contact_wechat FROM bare_accounts WHERE id = $1", creator_id)
        if creator is None or creator["role"] != "creator":
            return 404, {"code": "not_found"}
        value = creator["contact_phone"] if data["field"] == "phone" else creator["contact_wechat"]
        if not value:
            return 404, {"code": "contact_not_provided"}
        week = _week_start(now)
        query = (
            "SELECT id, quota_limit, used FROM bare_quotas WHERE account_id = $1 AND week_start = $2 AND "
            "kind = 'contact_views' AND counterpart_role = 'creator'"
        )
        quota = await conn.fetchrow(query, merchant["id"], week)
        if quota is None:
            limit = await conn.fetchval(
                "SELECT merchant_contact_views FROM bare_quota_policies WHERE "
                "effective_week <= $1 ORDER BY effective_week DESC LIMIT 1",
                week,
            )
            gmv = await conn.fetchval(
                "SELECT coalesce(sum(amount_fen), 0) FROM bare_sales_orders WHERE shop_id = $1 "
                "AND status = 'paid' AND paid_at >= $2 AND paid_at < $3",
                merchant["id"],
                week - timedelta(days=7),
                week,
            )
            await conn.execute(
                "INSERT INTO bare_quotas (id, account_id, week_start, kind, counterpart_role, "
                "quota_limit, used, basis_value, created_at) VALUES ($1, $2, $3, 'contact_views', "
                "'creator', $4, 0, $5, $6) ON CONFLICT DO NOTHING",
                _id(),
                merchant["id"],
                week,
                limit or 10,
                gmv,
                now,
            )
            quota = await conn.fetchrow(query, merchant["id"], week)
        used = await conn.fetchval(
            "UPDATE bare_quotas SET used = used + 1 WHERE id = $1 AND used < quota_limit RETURNING used", quota["id"]
        )
        if used is None:
            return 429, {"code": "quota_exhausted"}
    return 200, {"field": data["field"], "value": value}


# -- incentives ----------------------------------------------------------------------------------
async def _working_days(conn, after: date, until: date, enough: int) -> int:
    if until <= after:
        return 0
    holidays = {r["day"] for r in await conn.fetch("SELECT day FROM bare_holidays WHERE day > $1 AND day <= $2", after, until)}
    count, day = 0, after
    while day < until and count < enough:
        day += timedelta(days=1)
        count += day.weekday() < 5 and day not in holidays
    return count


async def _active_contract(conn, provider_id: str, merchant_id: str) -> bool:
    return (
        await conn.fetchval(
            "SELECT id FROM bare_contracts WHERE provider_id = $1 AND merchant_id = $2 AND state = 'active' LIMIT 1",
            provider_id,
            merchant_id,
        )
        is not None
    )


async def request_redemption(voucher_id: str, data: dict) -> tuple[int, dict]:
    """A provider asks to use part of a voucher: claim the voucher's overdue timers, lock the
    voucher (`FOR UPDATE`: available, not expired, the provider's), read the holidays to count 3
    working days' notice, read an active contract with the merchant (and, for a dimension-1
    voucher used for another merchant, the bound merchant's contracts); move the amount off the
    balance (`UPDATE` with the version step), insert the redemption (`requested`), its history row
    and the `redemption.created` event with its recipients (provider and merchant)."""
    now = datetime.now(UTC)
    provider_id, merchant_id, amount = data["provider_id"], data["merchant_id"], int(data["amount_fen"])
    use = date.fromisoformat(data["use_date"])
    async with pool.acquire() as conn, conn.transaction():
        await _due_timers(conn, now, entity_id=voucher_id)
        voucher = await conn.fetchrow(
            "SELECT provider_id, dimension, merchant_id, remaining_fen, issued_at, "
            "expires_at, state, version FROM bare_vouchers WHERE id = $1 FOR UPDATE",
            voucher_id,
        )
        if voucher is None or voucher["provider_id"] != provider_id:
            return 404, {"code": "not_found"}
        if voucher["state"] != "available" or now >= voucher["expires_at"]:
            return 409, {"code": "voucher_not_available"}
        if await _working_days(conn, now.astimezone(SH).date(), use, NOTICE_WORKING_DAYS) < NOTICE_WORKING_DAYS:
            return 422, {"code": "notice_too_short"}
        if datetime.combine(use, time(0), tzinfo=SH) >= voucher["expires_at"]:
            return 422, {"code": "voucher_expires_first"}
        if not await _active_contract(conn, provider_id, merchant_id):
            return 409, {"code": "merchant_not_contracted"}
        if voucher["dimension"] == 1 and merchant_id != voucher["merchant_id"]:
            ended = await conn.fetchval(
                "SELECT id FROM bare_contracts WHERE provider_id = $1 AND merchant_id = $2 AND ended_at >= $3 LIMIT 1",
                provider_id,
                voucher["merchant_id"],
                voucher["issued_at"],
            )
            if ended is None or await _active_contract(conn, provider_id, voucher["merchant_id"]):
                return 409, {"code": "voucher_bound_to_other_merchant"}
        if amount > voucher["remaining_fen"]:
            return 409, {"code": "insufficient_balance"}
        await conn.execute(
            "UPDATE bare_vouchers SET remaining_fen = $2, version = $3 + 1 WHERE id = $1 AND version = $3",
            voucher_id,
            voucher["remaining_fen"] - amount,
            voucher["version"],
        )
        redemption_id = _id()
        await conn.execute(
            "INSERT INTO bare_redemptions (id, voucher_id, provider_id, merchant_id, amount_fen, "
            "use_date, requested_at, state, version) VALUES ($1, $2, $3, $4, $5, $6, $7, 'requested', 1)",
            redemption_id,
            voucher_id,
            provider_id,
            merchant_id,
            amount,
            use,
            now,
        )
        await _record(
            conn,
            "redemption",
            redemption_id,
            None,
            "requested",
            "create",
            provider_id,
            "service_provider",
            now,
            [provider_id, merchant_id],
            {"amount_fen": amount, "use_date": use.isoformat()},
        )
    return 201, {"id": redemption_id, "state": "requested"}


# -- the world -----------------------------------------------------------------------------------
async def seed(data: dict) -> tuple[int, dict]:
    """`{merchants, creators, providers, live_from, live_to, signup_deadline, product_deadline}`:
    merchants m0… (alliance members), creators c0… (level 3, with contacts), pre-selected for the
    published campaign `cmp`; agency `agency` with base `base`; a quota policy with high limits;
    providers p0…, each with merchant pm<i>, an active contract and voucher v<i> (dimension 2,
    10**12 fen, expiring with the service's)."""
    now = datetime.now(UTC)
    t = datetime.fromisoformat
    merchants = [f"m{i}" for i in range(data["merchants"])]
    creators = [f"c{i}" for i in range(data["creators"])]
    providers = [f"p{i}" for i in range(data["providers"])]
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO bare_accounts (id, role, display_name, level, alliance_member, head_annual, contact_phone, "
            "contact_wechat) VALUES ($1, $2, $1, $3, $4, $5, $6, $7)",
            [(m, "merchant", None, True, None, None, None) for m in merchants]
            + [(c, "creator", 3, None, None, "13800138000", f"wx{c}") for c in creators]
            + [("agency", "agency", None, None, False, None, None)]
            + [(p, "service_provider", None, None, None, None, None) for p in providers]
            + [(f"pm{i}", "merchant", None, False, None, None, None) for i in range(len(providers))],
        )
        await conn.execute(
            "INSERT INTO bare_campaigns VALUES ('cmp', 'bench', $1, $2, $3, $4, 'published', 2)",
            t(data["signup_deadline"]),
            t(data["product_deadline"]),
            t(data["live_from"]),
            t(data["live_to"]),
        )
        await conn.executemany("INSERT INTO bare_campaign_eligible VALUES ('cmp', $1)", [(c,) for c in creators])
        await conn.execute("INSERT INTO bare_bases VALUES ('base', 'agency')")
        await conn.execute("INSERT INTO bare_quota_policies VALUES ('2020-01-05 16:00+00', 1000000)")
        await conn.executemany(
            "INSERT INTO bare_contracts VALUES ($1, $2, $3, 'active', NULL)",
            [(f"pct{i}", p, f"pm{i}") for i, p in enumerate(providers)],
        )
        await conn.executemany(
            "INSERT INTO bare_vouchers VALUES ($1, $2, 2, NULL, $3, $4, $5, 'available', 1)",
            [(f"v{i}", p, 10**12, now, t(data["voucher_expires_at"])) for i, p in enumerate(providers)],
        )
    return 200, {"ok": True}


# -- ASGI ----------------------------------------------------------------------------------------
def _use_pool(opened: asyncpg.Pool) -> None:
    global pool
    pool = opened


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send, DSN, SCHEMA, _use_pool)
        return
    parts = scope["path"].strip("/").split("/")
    data = await read_body(receive)
    if parts == ["health"]:
        status, payload = 200, {"ok": True}
    elif len(parts) == 3 and parts[0] == "campaigns" and parts[2] == "signups":
        status, payload = await create_signup(parts[1], data)
    elif parts == ["check-ins"]:
        status, payload = await create_check_in(data)
    elif len(parts) == 3 and parts[0] == "creators" and parts[2] == "contact-views":
        status, payload = await view_contact(parts[1], data)
    elif len(parts) == 3 and parts[0] == "vouchers" and parts[2] == "redemptions":
        status, payload = await request_redemption(parts[1], data)
    elif parts == ["seed"]:
        status, payload = await seed(data)
    else:
        status, payload = 404, {"code": "not_found"}
    await answer(send, status, payload)
