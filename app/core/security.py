"""Password hashing (argon2) and access tokens (JWT, HS256). Tokens carry the account's id and
role, so authenticating a request costs no query."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.clock import real_now
from app.core.config import get_settings
from app.core.errors import Unauthenticated


@lru_cache
def _hasher() -> PasswordHasher:
    s = get_settings()
    return PasswordHasher(time_cost=s.argon2_time_cost, memory_cost=s.argon2_memory_cost_kib)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_token(account_id: str, role: str) -> tuple[str, int]:
    s = get_settings()
    issued = real_now()  # real time: the test clock never expires a client's token
    claims = {"sub": account_id, "role": role, "iat": issued, "exp": issued + timedelta(seconds=s.token_ttl_seconds)}
    return jwt.encode(claims, s.secret_key, algorithm="HS256"), s.token_ttl_seconds


def decode_token(token: str) -> tuple[str, str]:
    """(account id, role) of a valid, unexpired token; 401 otherwise. A verified token's claims
    are remembered (keyed by the secret too), so the signature of a client's token is checked
    once, not on every request; its expiry still is."""
    account_id, role, expires = _verified(get_settings().secret_key, token)
    if expires <= time.time():
        raise Unauthenticated("the access token has expired")
    return account_id, role


@lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> tuple[str, str, float]:
    try:  # a failure raises, and is not cached
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired") from None
    except jwt.PyJWTError:
        raise Unauthenticated("the access token is not valid") from None
    return str(claims["sub"]), str(claims["role"]), float(claims["exp"])
