"""A base's check-in code (签到码): a signed token that lives `LC_CHECKIN_CODE_TTL_SECONDS` of
business time, its URL and the QR picture of that URL; and the base a scanned code names."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

import jwt
import segno
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import links
from app.core.config import get_settings
from app.core.errors import ValidationFailed
from app.db.repositories import live_bases as repo
from app.db.repositories.live_bases import LiveBaseRecord
from app.domain.live_bases.schemas import CheckInCodeOut
from app.domain.live_bases.service import owned_base
from app.state import clock
from app.state.core import Actor

TOKEN_AUDIENCE = "lc:check-in"


@dataclass(frozen=True, slots=True)
class QrPicture:
    svg: bytes
    expires_at: datetime


async def check_in_code(session: AsyncSession, actor: Actor, base_id: str) -> CheckInCodeOut:
    base = await owned_base(session, actor, base_id)
    settings = get_settings()
    now = await clock.now(session)
    expires_at = (now + timedelta(seconds=settings.checkin_code_ttl_seconds)).replace(microsecond=0)
    # Business time (the test clock) in the claims; verified against business time on scan.
    token = jwt.encode(
        {"aud": TOKEN_AUDIENCE, "base": base.id, "iat": int(now.timestamp()), "exp": int(expires_at.timestamp())},
        settings.secret_key,
        algorithm="HS256",
    )
    url = f"{links.base_url()}/check-in?token={quote(token)}"
    svg_url = links.signed(f"/v1/live-bases/{base.id}/check-in-code.svg", actor.id, actor.role)
    return CheckInCodeOut(token=token, url=url, svg_url=svg_url, expires_at=expires_at)


def qr_svg(url: str) -> bytes:
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", scale=4, border=4)
    return buffer.getvalue()


async def check_in_qr(session: AsyncSession, actor: Actor, base_id: str) -> QrPicture:
    """The QR picture (SVG) of a fresh check-in code's URL."""
    code = await check_in_code(session, actor, base_id)
    return QrPicture(qr_svg(code.url), code.expires_at)


async def base_of_code(session: AsyncSession, token: str) -> LiveBaseRecord:
    """The base a scanned code names (422 `invalid_check_in_code`, `check_in_code_expired`).
    The base's read carries the test clock's offset: business time costs no statement."""
    try:
        claims = jwt.decode(
            token,
            get_settings().secret_key,
            algorithms=["HS256"],
            audience=TOKEN_AUDIENCE,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["aud", "base", "exp"]},
        )
    except jwt.PyJWTError:
        raise ValidationFailed(
            "this is not a check-in code of this platform", loc=["body", "token"], code="invalid_check_in_code"
        ) from None
    base, offset = await repo.base_with_clock(session, str(claims["base"]), with_clock=clock.carries_offset())
    if base is not None and clock.carries_offset():
        clock.remember(session, offset)
    now = await clock.now(session)
    if not isinstance(claims.get("exp"), int) or now.timestamp() >= claims["exp"]:
        raise ValidationFailed(
            "this check-in code has expired: scan the code at the base again", loc=["body", "token"], code="check_in_code_expired"
        )
    if base is None:
        raise ValidationFailed("this check-in code's base no longer exists", loc=["body", "token"], code="invalid_check_in_code")
    return base
