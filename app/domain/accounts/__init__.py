"""The accounts module: accounts, roles and profiles (`service.py`), the merchant's Xingtu binding
(`xingtu.py`) and the creator square (`creator_square.py`). The names other modules use are
re-exported here."""

from __future__ import annotations

from app.domain.accounts.creator_square import CreatorCard, list_creators
from app.domain.accounts.service import (
    OPERATOR_ONLY,
    PRIVATE,
    ROLE_FIELDS,
    AccountCreate,
    AccountOut,
    AccountPatch,
    Contact,
    Name,
    Phone,
    Profile,
    Quotes,
    Role,
    TokenOut,
    account_out,
    account_view,
    authenticate,
    create_account,
    ensure_operator,
    get_account,
    open_account,
    patch_account,
    profile_of,
    require_role,
    update_account,
)
from app.domain.accounts.xingtu import XingtuBindingIn, XingtuBindingOut, bind_xingtu

__all__ = [
    "AccountCreate",
    "AccountOut",
    "AccountPatch",
    "Contact",
    "CreatorCard",
    "Name",
    "OPERATOR_ONLY",
    "PRIVATE",
    "Phone",
    "Profile",
    "Quotes",
    "ROLE_FIELDS",
    "Role",
    "TokenOut",
    "XingtuBindingIn",
    "XingtuBindingOut",
    "account_out",
    "account_view",
    "authenticate",
    "bind_xingtu",
    "create_account",
    "ensure_operator",
    "get_account",
    "list_creators",
    "open_account",
    "patch_account",
    "profile_of",
    "require_role",
    "update_account",
]
