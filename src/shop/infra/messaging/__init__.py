"""Messages: the outbox every service writes in its own transactions, the relay that publishes it,
the inbox that makes every consumer idempotent, the consumer declarations, and the brokers."""
from shop.infra.messaging.broker import Broker
from shop.infra.messaging.consumer import Binding, Consumes, Inbox, Subscription, consume, topology
from shop.infra.messaging.embedded import EmbeddedBroker, broker_metadata
from shop.infra.messaging.message import Message, add_message_tables
from shop.infra.messaging.outbox import Outbox
from shop.infra.messaging.relay import Relay, Settler, backoff_ms, poll_forever

__all__ = [
    "Binding", "Broker", "Consumes", "EmbeddedBroker", "Inbox", "Message", "Outbox", "Relay", "Settler",
    "Subscription", "add_message_tables", "backoff_ms", "broker_metadata", "consume", "poll_forever", "topology",
]
