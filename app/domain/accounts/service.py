"""Accounts, roles and profiles."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.i18n import msg, term
from app.core.passwords import MAX_LENGTH, check_password
from app.core.security import hash_password
from app.core.times import UtcDatetime
from app.db.repositories import accounts as repo
from app.db.repositories.accounts import AccountRecord
from app.domain.schemas import Strict
from app.domain.signals import account_changed
from app.state import clock
from app.state.core import Actor


class Role(str, Enum):
    merchant = "merchant"
    creator = "creator"
    agency = "agency"
    group_leader = "group_leader"
    service_provider = "service_provider"
    operator = "operator"
    platform = "platform"


Name = Annotated[str, Field(min_length=1, max_length=100)]
Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 -]{5,19}$")]


class Quotes(Strict):
    dedicated_hourly_fen: int | None = Field(default=None, ge=0, le=10**12)
    shared_hourly_fen: int | None = Field(default=None, ge=0, le=10**12)


class Contact(Strict):
    phone: Phone | None = None
    wechat: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class Profile(Strict):
    """Every profile field of every role; each role uses its own (see `ROLE_FIELDS`).
    merchant: shop_name, alliance_member, experience_score, xingtu_account_id.
    creator: nickname, level, followers, accepting_orders, quotes, contact.
    agency: name, head_annual. group_leader: name. service_provider: name, certified."""

    shop_name: Name | None = None
    alliance_member: bool | None = None
    experience_score: Decimal | None = Field(default=None, ge=0, le=5, max_digits=3, decimal_places=2)
    xingtu_account_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    nickname: Name | None = None
    level: int | None = Field(default=None, ge=0, le=7)
    followers: int | None = Field(default=None, ge=0, le=10**12)
    accepting_orders: bool | None = None
    quotes: Quotes | None = None
    contact: Contact | None = None
    name: Name | None = None
    head_annual: bool | None = None
    certified: bool | None = None


ROLE_FIELDS: dict[str, set[str]] = {
    "merchant": {"shop_name", "alliance_member", "experience_score", "xingtu_account_id"},
    "creator": {"nickname", "level", "followers", "accepting_orders", "quotes", "contact"},
    "agency": {"name", "head_annual"},
    "group_leader": {"name"},
    "service_provider": {"name", "certified"},
    "operator": set(),
    "platform": set(),
}
OPERATOR_ONLY = {"level", "alliance_member", "experience_score", "head_annual", "certified"}
PRIVATE = {"contact", "xingtu_account_id"}
_NAME_REQUIRED = {
    "merchant": "shop_name",
    "creator": "nickname",
    "agency": "name",
    "group_leader": "name",
    "service_provider": "name",
}


class AccountCreate(Strict):
    role: Role
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(
        min_length=1, max_length=MAX_LENGTH, description="at least 10 characters, not a common password (`weak_password`)"
    )
    display_name: Name
    profile: Profile = Field(default_factory=Profile)

    @model_validator(mode="after")
    def _profile_fits_role(self) -> AccountCreate:
        _check_fields(self.role.value, self.profile)
        return self


class AccountPatch(Strict):
    """The password is changed with the current one: POST /v1/accounts/me/password."""

    display_name: Name | None = None
    profile: Profile | None = None


class AccountOut(BaseModel):
    id: str
    role: Role
    username: str | None = None
    display_name: str
    profile: dict[str, Any]
    created_at: UtcDatetime | None = None


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


def _check_fields(role: str, profile: Profile) -> None:
    extra = profile.model_fields_set - ROLE_FIELDS[role]
    if extra:
        field = sorted(extra)[0]
        raise ValidationFailed(
            msg("'{field}' is not a profile field of a {role}", field=field, role=term(role)), loc=["body", "profile", field]
        )


def profile_of(account: AccountRecord, *, private: bool) -> dict[str, Any]:
    values: dict[str, Any] = {
        "shop_name": account.shop_name,
        "alliance_member": account.alliance_member,
        "experience_score": float(account.experience_score) if account.experience_score is not None else None,
        "xingtu_account_id": account.xingtu_account_id,
        "nickname": account.nickname,
        "level": account.level,
        "followers": account.followers,
        "accepting_orders": account.accepting_orders,
        "quotes": {
            "dedicated_hourly_fen": account.quote_dedicated_hourly_fen,
            "shared_hourly_fen": account.quote_shared_hourly_fen,
        },
        "contact": {"phone": account.contact_phone, "wechat": account.contact_wechat},
        "name": account.org_name,
        "head_annual": account.head_annual,
        "certified": account.certified,
    }
    fields = ROLE_FIELDS[account.role] - (set() if private else PRIVATE)
    return {k: values[k] for k in sorted(fields)}


def account_out(account: AccountRecord, viewer: Actor | None) -> AccountOut:
    private = viewer is not None and (viewer.id == account.id or viewer.role == "operator")
    return AccountOut(
        id=account.id,
        role=Role(account.role),
        display_name=account.display_name,
        username=account.username if private else None,
        created_at=account.created_at if private else None,
        profile=profile_of(account, private=private),
    )


def _apply_profile(values: dict[str, Any], profile: Profile) -> set[str]:
    """Put the account columns that `profile` sets into `values`; the profile fields it sets."""
    changed: set[str] = set()
    for field in profile.model_fields_set:
        value = getattr(profile, field)
        if field == "quotes":
            quotes = value or Quotes()
            for key in quotes.model_fields_set:
                values[f"quote_{key}"] = getattr(quotes, key)
        elif field == "contact":
            contact = value or Contact()
            for key in contact.model_fields_set:
                values[f"contact_{key}"] = getattr(contact, key)
        elif field == "name":
            values["org_name"] = value
        else:
            values[field] = value
        changed.add(field)
    return changed


_DEFAULTS: dict[str, dict[str, Any]] = {
    "merchant": {"alliance_member": False, "experience_score": Decimal("5.00")},
    "creator": {"level": 0, "followers": 0, "accepting_orders": True},
    "agency": {"head_annual": False},
    "service_provider": {"certified": False},
}


async def create_account(session: AsyncSession, body: AccountCreate) -> AccountRecord:
    role = body.role.value
    name_field = _NAME_REQUIRED.get(role)
    if name_field and getattr(body.profile, name_field) is None:
        raise ValidationFailed(
            msg("a {role} needs profile.{field}", role=term(role), field=name_field), loc=["body", "profile", name_field]
        )
    check_password(body.password, loc=["body", "password"])
    values: dict[str, Any] = {
        "role": role,
        "username": body.username,
        "password_hash": await hash_password(body.password),
        "display_name": body.display_name,
        "created_at": await clock.now(session),
        **_DEFAULTS.get(role, {}),
    }
    _apply_profile(values, body.profile)
    account = await repo.insert_account(session, values)
    if account is None:  # taken, perhaps by a racing request (the insert waited for it to commit)
        raise Conflict("this username is taken", code="username_taken")
    return account


async def get_account(session: AsyncSession, account_id: str) -> AccountRecord:
    account = await repo.account_by_id(session, account_id)
    if account is None:
        raise NotFound("no such account")
    return account


async def patch_account(session: AsyncSession, account: AccountRecord, body: AccountPatch, actor: Actor) -> AccountRecord:
    if body.profile is not None:
        _check_fields(account.role, body.profile)
        if actor.role != "operator":
            locked = body.profile.model_fields_set & OPERATOR_ONLY
            if locked:
                raise Forbidden(msg("only an operator changes {fields}", fields=", ".join(sorted(locked))))
        for field in body.profile.model_fields_set:
            if (
                field in _NAME_REQUIRED.values()
                and getattr(body.profile, field) is None
                and _NAME_REQUIRED.get(account.role) == field
            ):
                raise ValidationFailed(msg("profile.{field} cannot be emptied", field=field), loc=["body", "profile", field])
    values: dict[str, Any] = {}
    changed = _apply_profile(values, body.profile) if body.profile is not None else set()
    if body.display_name is not None:
        values["display_name"] = body.display_name
        changed.add("display_name")
    if values:
        updated = await repo.update_account(session, account.id, values)
        if updated is None:
            raise NotFound("no such account")
        account = updated
    if changed:
        await account_changed.send(session, account=account, fields=changed)
    return account


async def ensure_operator(session: AsyncSession, username: str, password: str) -> bool:
    """Create the bootstrap operator if it does not exist. Returns True when created."""
    if await repo.account_id_by_username(session, username):
        return False
    try:
        await create_account(
            session, AccountCreate(role=Role.operator, username=username, password=password, display_name="Operator")
        )
    except Conflict:  # another replica, starting at the same time, created it
        return False
    return True


async def require_role(session: AsyncSession, account_id: str, role: str, *, loc: list[str | int]) -> AccountRecord:
    """The account `account_id`, which must exist and have `role` (else 422 at `loc`)."""
    account = await repo.account_by_id(session, account_id)
    if account is None or account.role != role:
        raise ValidationFailed(msg("'{account_id}' is not a {role}", account_id=account_id, role=term(role)), loc=loc)
    return account


# -- the endpoints' answers ---------------------------------------------------------------------
async def open_account(session: AsyncSession, actor: Actor, body: AccountCreate) -> AccountOut:
    """An operator creates an account of any role."""
    return account_out(await create_account(session, body), actor)


async def account_view(session: AsyncSession, actor: Actor, account_id: str) -> AccountOut:
    """The public card of an account; its owner and operators also see the private fields."""
    return account_out(await get_account(session, account_id), actor)


async def update_account(session: AsyncSession, actor: Actor, account_id: str, body: AccountPatch) -> AccountOut:
    account = await get_account(session, account_id)
    return account_out(await patch_account(session, account, body, actor), actor)
