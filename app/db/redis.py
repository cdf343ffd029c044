"""The failed-login counts in Redis (security.md: "kept in PostgreSQL, or Redis when
`LC_REDIS_URL` is set"), for deployments that keep such short-lived counters out of the
primary. Same contract as the `login_failures` table (app/db/repositories/auth.py): counts of
a username's and of an address's failures after a moment, with the oldest of each; a success
forgets one address's failures of one username; what left the window goes.

Per failure, one member (its id) in two sorted sets scored by the failure's business time (the
test clock's, so `POST /v1/admin/clock/advance` moves the window as it does in the database):
`<prefix>:login:u:<username>` and `<prefix>:login:ip:<address>`, and in the set
`<prefix>:login:pair:<[address, username]>` that a success empties atomically (a Lua script).
Every key expires one window after its last failure, so Redis keeps nothing longer.

A Redis that cannot be reached fails the login with 503 `service_unavailable` (as a database
that cannot be reached does), never a 500 and never an unlimited login."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.errors import DomainError
from app.core.i18n import N_
from app.db.repositories.auth import FailureCounts

# by URL and event loop: a client's connections belong to the loop that opened them
_clients: dict[tuple[str, int], aioredis.Redis] = {}

# A success: forget the pair's failures in both sorted sets, then the pair itself, at once.
_FORGET = """
local members = redis.call('SMEMBERS', KEYS[3])
if #members > 0 then
  redis.call('ZREM', KEYS[1], unpack(members))
  redis.call('ZREM', KEYS[2], unpack(members))
end
redis.call('DEL', KEYS[3])
return #members
"""


class StoreUnavailable(DomainError):
    status, code = 503, "service_unavailable"

    def __init__(self) -> None:
        super().__init__(N_("the login limits' store cannot be reached; retry shortly"), headers={"Retry-After": "5"})


def client(url: str) -> aioredis.Redis:
    """One client (and its connection pool) per URL and event loop."""
    key = (url, id(asyncio.get_running_loop()))
    found = _clients.get(key)
    if found is None:
        found = _clients[key] = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    return found


async def close_all() -> None:
    """Close the clients of the running loop (at the application's shutdown)."""
    loop = id(asyncio.get_running_loop())
    for key in [key for key in _clients if key[1] == loop]:
        await _clients.pop(key).aclose()


def _score(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _moment(score: float | None, like: datetime) -> datetime | None:
    if score is None:
        return None
    moment = datetime.fromtimestamp(score, UTC)
    return moment if like.tzinfo else moment.replace(tzinfo=None)


class RedisFailures:
    def __init__(self, url: str, prefix: str, window_seconds: int) -> None:
        self.redis = client(url)
        self.prefix = prefix
        self.ttl = window_seconds

    def _keys(self, username: str, client_ip: str) -> tuple[str, str, str]:
        return (
            f"{self.prefix}:login:u:{username}",
            f"{self.prefix}:login:ip:{client_ip}",
            f"{self.prefix}:login:pair:{json.dumps([client_ip, username])}",
        )

    async def counts(self, username: str, client_ip: str, since: datetime) -> FailureCounts:
        by_user, by_ip, _ = self._keys(username, client_ip)
        after = f"({_score(since)}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in (by_user, by_ip):
                    pipe.zcount(key, after, "+inf")
                    pipe.zrangebyscore(key, after, "+inf", start=0, num=1, withscores=True)
                user_count, user_oldest, ip_count, ip_oldest = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise StoreUnavailable() from error
        return FailureCounts(
            int(user_count),
            _moment(user_oldest[0][1] if user_oldest else None, since),
            int(ip_count),
            _moment(ip_oldest[0][1] if ip_oldest else None, since),
        )

    async def add(self, failure_id: str, username: str, client_ip: str, at: datetime, since: datetime) -> None:
        """Record a failure and drop what left the window (`since`) from both sets."""
        keys = self._keys(username, client_ip)
        score = _score(at)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(keys[0], {failure_id: score})
                pipe.zadd(keys[1], {failure_id: score})
                pipe.sadd(keys[2], failure_id)
                pipe.zremrangebyscore(keys[0], "-inf", _score(since))
                pipe.zremrangebyscore(keys[1], "-inf", _score(since))
                for key in keys:
                    pipe.expire(key, self.ttl)
                await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise StoreUnavailable() from error

    async def forget(self, username: str, client_ip: str) -> None:
        try:
            await self.redis.eval(_FORGET, 3, *self._keys(username, client_ip))
        except (RedisConnectionError, RedisTimeoutError) as error:
            raise StoreUnavailable() from error
