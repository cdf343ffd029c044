"""In-app notifications (站内信) and SMS, written in the transaction of the change.

SMS rows are the outbox of the SMS gateway adapter: with no gateway configured the recorder
adapter keeps them (status `recorded`); with `LC_SMS_GATEWAY_URL` they are `queued` and a relay
posts them after commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import get_settings
from app.db.models.accounts import Account
from app.db.models.platform import Notification, SmsMessage
from app.domain import clock


async def notify(session: AsyncSession, account_id: str, kind: str, title: str, body: str,
                 data: dict[str, Any] | None = None) -> Notification:
    note = Notification(account_id=account_id, kind=kind, title=title, body=body, data=data,
                        created_at=await clock.now(session))
    session.add(note)
    return note


async def send_sms(session: AsyncSession, account_id: str | None, phone: str | None, text: str) -> SmsMessage | None:
    if not phone:
        return None
    now = await clock.now(session)
    recorded = not get_settings().sms_gateway_url
    message = SmsMessage(account_id=account_id, phone=phone, text=text,
                         status="recorded" if recorded else "queued", created_at=now,
                         sent_at=now if recorded else None)
    session.add(message)
    return message


async def notify_with_sms(session: AsyncSession, account: Account, kind: str, title: str, body: str,
                          data: dict[str, Any] | None = None) -> None:
    """The in-app message plus an SMS to the account's phone, where it has one."""
    await notify(session, account.id, kind, title, body, data)
    await send_sms(session, account.id, account.contact_phone, f"【Live Collab】{title}：{body}")
