"""What a password must be (NIST SP 800-63B): at least 10 characters and not a common one."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from app.core.errors import ValidationFailed
from app.core.i18n import Message, msg

MIN_LENGTH = 10
MAX_LENGTH = 128
_LIST = Path(__file__).with_name("data") / "common-passwords.txt.gz"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    with gzip.open(_LIST, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def weakness(password: str) -> Message | None:
    """Why `password` is refused, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return msg("a password has at least {count} characters", count=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        return msg("a password has at most {count} characters", count=MAX_LENGTH)
    if password.lower() in common_passwords() or len(set(password)) == 1:
        return msg("this password is too common: choose another")
    return None


def check_password(password: str, *, loc: list[str | int]) -> None:
    """422 `weak_password` saying why, for a password the service does not accept."""
    reason = weakness(password)
    if reason is not None:
        raise ValidationFailed(msg("the password is not accepted: {reason}", reason=reason), loc=loc, code="weak_password")
