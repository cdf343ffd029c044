"""The broker adapters: NATS JetStream (nats-py) and RabbitMQ (aio-pika), behind one small
interface the relay uses (`Publisher`).

Both publish a batch pipelined (every message written, then every acknowledgement awaited:
JetStream's `publish_async`, RabbitMQ's publisher confirms) and report how many messages at the
head of the batch the broker acknowledged, so the relay records exactly those. The message id is
the event id: JetStream drops a second copy inside its duplicate window (`Nats-Msg-Id`);
RabbitMQ consumers de-duplicate on the AMQP `message_id`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.db.repositories.events import EventRecord
from app.domain.events import EventOut

log = logging.getLogger("app.broker")

ACK_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
DUPLICATE_WINDOW_SECONDS = 120.0  # JetStream drops a message id seen within this window


class PublishFailed(Exception):
    """The broker acknowledged only the first `acknowledged` messages of a batch."""

    def __init__(self, acknowledged: int, cause: BaseException | str) -> None:
        super().__init__(f"{acknowledged} acknowledged, then: {cause!r}")
        self.acknowledged = acknowledged
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Received:
    subject: str
    message_id: str | None
    body: bytes


def body_of(event: EventRecord) -> bytes:
    """The event JSON as `GET /v1/events` shows it."""
    return EventOut.model_validate(event).model_dump_json().encode()


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _acknowledged_prefix(futures: Sequence[asyncio.Future]) -> tuple[int, BaseException | str | None]:
    """How many futures at the head completed without error, and the first failure after them."""
    for index, future in enumerate(futures):
        if not future.done():
            return index, "no acknowledgement in time"
        if future.cancelled():
            return index, "cancelled"
        error = future.exception()
        if error is not None:
            return index, error
    return len(futures), None


class Publisher(ABC):
    """One broker target: where events go, and the key of its position in the database."""

    target: str
    subject_prefix: str

    def subject_of(self, event_type: str) -> str:
        return f"{self.subject_prefix}.{event_type}"

    @abstractmethod
    async def setup(self) -> str:
        """Create the stream / exchange if missing (idempotent); a line saying what there is."""

    @abstractmethod
    async def publish(self, events: Sequence[EventRecord]) -> None:
        """Publish `events` in order and wait for every acknowledgement; `PublishFailed` says how
        many were acknowledged at the head when one was not."""

    @abstractmethod
    def tail(
        self, subject: str | None = None, *, from_start: bool = False, on_ready: Callable[[], None] | None = None
    ) -> AsyncIterator[Received]:
        """The messages as they arrive on the broker (`subject` in NATS syntax: `*`, `>`);
        `on_ready` is called once the subscription is in place."""

    @abstractmethod
    async def close(self) -> None: ...


class NatsPublisher(Publisher):
    def __init__(self, url: str, stream: str, subject_prefix: str, *, ack_timeout: float = ACK_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.ack_timeout = ack_timeout
        self.target = f"{_without_credentials(url)}/{stream}"
        self._nc = None
        self._js = None
        self._ready = False

    async def _jetstream(self):
        import nats

        if self._nc is None or self._nc.is_closed:
            self._ready = False

            async def on_error(error: Exception) -> None:
                log.warning("nats: %r", error)

            # reconnects for ever once connected; the first connection is bounded here
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=[self.url],
                    name="live-collab-broker-relay",
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=on_error,
                ),
                CONNECT_TIMEOUT_SECONDS,
            )
            self._js = self._nc.jetstream(timeout=self.ack_timeout, publish_async_max_pending=20_000)
        return self._js

    async def setup(self) -> str:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        js = await self._jetstream()
        try:
            info = await js.stream_info(self.stream)
            said = "exists"
        except NotFoundError:
            info = await js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.subject_prefix}.>"],
                    storage=StorageType.FILE,
                    duplicate_window=DUPLICATE_WINDOW_SECONDS,
                )
            )
            said = "created"
        self._ready = True
        subjects = ", ".join(info.config.subjects or [])
        return f"JetStream stream {self.stream} ({subjects}) {said}: {info.state.messages} messages"

    async def publish(self, events: Sequence[EventRecord]) -> None:
        js = await self._jetstream()
        if not self._ready:
            await self.setup()
        futures: list[asyncio.Future] = []
        try:
            for event in events:
                futures.append(
                    await js.publish_async(
                        self.subject_of(event.type),
                        body_of(event),
                        stream=self.stream,
                        headers={"Nats-Msg-Id": event.id},
                        # no wait_stall: its `wait_for` per message cost 5x the wall time; a batch
                        # (at most 10,000) never fills the client's 20,000 pending slots
                    )
                )
            if futures:
                await asyncio.wait(futures, timeout=self.ack_timeout)
        except Exception as exc:  # a write failed: what was acknowledged before it still counts
            if futures:
                await asyncio.wait(futures, timeout=self.ack_timeout)
            acknowledged, _ = _acknowledged_prefix(futures)
            raise PublishFailed(acknowledged, exc) from exc
        finally:
            for future in futures:
                future.cancel()  # a no-op on the completed; frees the client's slot of the rest
        acknowledged, error = _acknowledged_prefix(futures)
        if acknowledged < len(events):
            raise PublishFailed(acknowledged, error or "not acknowledged")

    async def tail(
        self, subject: str | None = None, *, from_start: bool = False, on_ready: Callable[[], None] | None = None
    ) -> AsyncIterator[Received]:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import DeliverPolicy

        js = await self._jetstream()
        sub = await js.subscribe(
            subject or f"{self.subject_prefix}.>",
            stream=self.stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL if from_start else DeliverPolicy.NEW,
        )
        if on_ready is not None:
            on_ready()
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except NatsTimeout:
                    continue
                yield Received(msg.subject, (msg.headers or {}).get("Nats-Msg-Id"), msg.data)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def delete_stream(self) -> None:
        """Remove the stream (the tests' clean-up)."""
        js = await self._jetstream()
        await js.delete_stream(self.stream)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        self._nc = self._js = None


# what `_publish_framed` uses of aiormq's channel (7.x); without them, one `basic_publish` each
_AIORMQ_PARTS = ("lock", "delivery_tag", "confirmations", "create_future", "write_queue", "number", "_split_body")


def _amqp_pattern(subject: str) -> str:
    """A NATS-style subject pattern as an AMQP topic binding key (`>` is `#`)."""
    return ".".join("#" if part == ">" else part for part in subject.split("."))


class AmqpPublisher(Publisher):
    def __init__(self, url: str, exchange: str, subject_prefix: str, *, ack_timeout: float = ACK_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.exchange_name = exchange
        self.subject_prefix = subject_prefix
        self.ack_timeout = ack_timeout
        vhost = urlsplit(url).path.lstrip("/") or "%2F"
        self.target = f"{_without_credentials(url)}/{vhost}/{exchange}"
        self.framed = True  # a batch as one write (see `_publish_framed`); False: aiormq's own path
        self._connection = None
        self._channel = None
        self._exchange = None

    async def _open(self):
        import aio_pika

        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(self.url, timeout=CONNECT_TIMEOUT_SECONDS)
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        return self._exchange

    async def setup(self) -> str:
        await self._open()
        return f"RabbitMQ topic exchange {self.exchange_name} (durable) declared"

    async def publish(self, events: Sequence[EventRecord]) -> None:
        await self._open()
        assert self._channel is not None
        channel = await self._channel.get_underlay_channel()  # aiormq's, under aio-pika's
        futures: list[asyncio.Future] = []
        try:
            if self.framed and all(hasattr(channel, name) for name in _AIORMQ_PARTS):
                futures = await self._publish_framed(channel, events)
            else:
                futures = self._publish_each(channel, events)
            if futures:
                await asyncio.wait(futures, timeout=self.ack_timeout)
        finally:
            for future in futures:
                future.cancel()
        acknowledged, error = _acknowledged_prefix(futures)
        if acknowledged < len(events):
            self._channel = None  # a channel that lost a confirmation is not trusted again
            raise PublishFailed(acknowledged, error or "not confirmed")

    def _properties(self, event: EventRecord) -> Any:
        from aiormq import spec

        return spec.Basic.Properties(
            message_id=event.id,
            message_type=event.type,
            content_type="application/json",
            delivery_mode=2,  # persistent
        )

    async def _publish_framed(self, channel: Any, events: Sequence[EventRecord]) -> list[asyncio.Future]:
        """The batch's publishes as one write: aiormq writes each `basic_publish` with a
        send() of its own, which was half the relay's CPU per message. This does what
        `basic_publish` does (next delivery tag, a confirmation future per tag, the publish,
        header and body frames), under the channel's lock, for the whole batch at once."""
        from aiormq import spec
        from aiormq.abc import ChannelFrame
        from aiormq.channel import ContentHeader

        futures: list[asyncio.Future] = []
        async with channel.lock:
            frames: list[Any] = []
            for event in events:
                body = body_of(event)
                channel.delivery_tag += 1
                future = channel.create_future()
                channel.confirmations[channel.delivery_tag] = future
                futures.append(future)
                frames.append(spec.Basic.Publish(exchange=self.exchange_name, routing_key=self.subject_of(event.type)))
                frames.append(ContentHeader(properties=self._properties(event), body_size=len(body)))
                frames.extend(channel._split_body(body))
            await channel.write_queue.put(ChannelFrame.marshall(channel_number=channel.number, frames=frames))
        return futures

    def _publish_each(self, channel: Any, events: Sequence[EventRecord]) -> list[asyncio.Future]:
        # tasks start in order and take the channel's lock in order: the frames go out in order
        return [
            asyncio.ensure_future(
                channel.basic_publish(
                    body_of(event),
                    exchange=self.exchange_name,
                    routing_key=self.subject_of(event.type),
                    properties=self._properties(event),
                    wait=False,
                )
            )
            for event in events
        ]

    async def tail(
        self, subject: str | None = None, *, from_start: bool = False, on_ready: Callable[[], None] | None = None
    ) -> AsyncIterator[Received]:
        exchange = await self._open()
        assert self._channel is not None
        queue = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=_amqp_pattern(subject or f"{self.subject_prefix}.>"))
        if on_ready is not None:
            on_ready()
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                yield Received(message.routing_key or "", message.message_id, message.body)

    async def delete_exchange(self) -> None:
        """Remove the exchange (the tests' clean-up)."""
        await self._open()
        assert self._channel is not None
        await self._channel.exchange_delete(self.exchange_name)

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = self._channel = self._exchange = None


def publisher_for(url: str, *, stream: str, exchange: str, subject_prefix: str) -> Publisher:
    scheme = urlsplit(url).scheme
    if scheme in ("nats", "tls"):
        return NatsPublisher(url, stream, subject_prefix)
    if scheme in ("amqp", "amqps"):
        return AmqpPublisher(url, exchange, subject_prefix)
    raise ValueError(f"LC_EVENT_BROKER_URL: unknown scheme {scheme!r} (nats:// or amqp://)")
