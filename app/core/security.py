"""Password hashing (argon2, off the event loop) and access tokens (JWT, HS256). A token carries
its account's id and role and the id of its session (`sid`): the signature is checked once per
token and cached, the session's liveness on every request (app/domain/accounts/sessions.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def _lower_priority() -> None:
    """Run this hashing thread at a lower CPU priority (Linux: a thread has its own nice
    value), so that on busy cores the event loop is scheduled first and keeps answering while
    logins queue; elsewhere, nothing."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), get_settings().password_hash_nice)


@lru_cache
def _pool() -> ThreadPoolExecutor:
    # argon2-cffi releases the GIL while it hashes: a few threads keep the cores busy with
    # logins while the event loop goes on serving; more would only queue on the same cores
    return ThreadPoolExecutor(
        max_workers=get_settings().password_hash_threads, thread_name_prefix="argon2", initializer=_lower_priority
    )


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("an unknown username costs a verification too")


async def hash_password(password: str) -> str:
    """The argon2 hash of `password`, computed in the hashing threads (off the event loop)."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), _hasher().hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (an unknown username) a dummy one is verified,
    so the answer takes as long as for a wrong password."""
    loop = asyncio.get_running_loop()
    if password_hash is None:
        dummy = await loop.run_in_executor(_pool(), _dummy_hash, _hasher())
        await loop.run_in_executor(_pool(), _verify, dummy, password)
        return False
    return await loop.run_in_executor(_pool(), _verify, password_hash, password)


def create_token(account_id: str, role: str, session_id: str) -> tuple[str, int]:
    s = get_settings()
    issued = real_now()  # real time: the test clock never expires a client's token
    claims = {
        "sub": account_id,
        "role": role,
        "sid": session_id,
        "iat": issued,
        "exp": issued + timedelta(seconds=s.token_ttl_seconds),
    }
    return jwt.encode(claims, s.secret_key, algorithm="HS256"), s.token_ttl_seconds


def decode_token(token: str) -> tuple[str, str, str]:
    """(account id, role, session id) of a valid, unexpired token; 401 otherwise. A verified
    token's claims are remembered (keyed by the secret too), so the signature of a client's
    token is checked once, not on every request; its expiry still is."""
    account_id, role, session_id, expires = _verified(get_settings().secret_key, token)
    if expires <= time.time():
        raise Unauthenticated("the access token has expired")
    return account_id, role, session_id


@lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> tuple[str, str, str, float]:
    try:  # a failure raises, and is not cached
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub", "role", "sid", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the access token has expired") from None
    except jwt.PyJWTError:
        raise Unauthenticated("the access token is not valid") from None
    return str(claims["sub"]), str(claims["role"]), str(claims["sid"]), float(claims["exp"])
