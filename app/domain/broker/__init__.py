"""Events on a broker (docs/scaling.md, "Broker"): the relay and the NATS / RabbitMQ adapters."""

from app.domain.broker.publishers import AmqpPublisher, NatsPublisher, Publisher, PublishFailed, Received, publisher_for
from app.domain.broker.relay import BrokerRelay, relay_due, relays_for

__all__ = [
    "AmqpPublisher",
    "BrokerRelay",
    "NatsPublisher",
    "PublishFailed",
    "Publisher",
    "Received",
    "publisher_for",
    "relay_due",
    "relays_for",
]
