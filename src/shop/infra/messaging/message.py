"""A message, and the two tables every service owns for messages: its outbox and its inbox.

The outbox (`trade_mq_producer_temp`) holds a message until the broker has it; a row may carry
a due time in the future (the armed cancel of ARCHITECTURE.md point 5, an unpaid order's timeout).
The inbox (`trade_mq_consumer_log`) is written in the same transaction as the consumer's work,
keyed (group, tag, key): a redelivered message finds its row and is only acknowledged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from shop.infra.types import Timestamp


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # RocketMQ topic / RabbitMQ exchange
    tag: str  # RocketMQ tag / RabbitMQ routing key
    key: str  # the business key (an order id): the inbox deduplicates on (group, tag, key)
    body: dict[str, Any]
    msg_id: str = field(default_factory=lambda: os.urandom(16).hex())
    # The W3C traceparent of the work that wrote it (infra/tracing.py), so that its handling joins
    # that trace; None when telemetry is off. Stamped by the outbox, never by the handlers.
    trace: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self.body)

    @property
    def event(self) -> str:
        return f"{self.topic}_{self.tag}"


def message_columns() -> list[sa.Column[Any]]:
    """What every table holding a message keeps of it: for whom (the group), where it goes (topic,
    tag), its business key, its body, and the trace it belongs to.

    The trace has a column of its own rather than a key in the body: the body is the message's
    contract (the consumers read it, the inbox keeps it, the operator sees it), and the trace is
    transport, like an AMQP header; rows written before it existed, or with telemetry off, have none."""
    return [
        *(sa.Column(name, sa.String(100), nullable=False)
          for name in ("group_name", "msg_topic", "msg_tag", "msg_key")),
        sa.Column("msg_body", sa.Text, nullable=False),
        sa.Column("msg_trace", sa.String(100), nullable=True),
    ]


def add_message_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Every service owns an outbox and an inbox in its own database."""
    outbox = sa.Table(
        "trade_mq_producer_temp",
        metadata,
        sa.Column("id", sa.String(64), primary_key=True),
        *message_columns(),
        sa.Column("msg_status", sa.Integer, nullable=False, server_default="0"),
        sa.Column("create_time", Timestamp(), nullable=False),
        # Epoch milliseconds after which the relay may publish it: now, or a deadline. A sent
        # message is kept for its order's timeline, with due_at at SENT + the time it was sent: out
        # of every due range, and pruned by a range of the same index (see outbox.py).
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Index("ix_trade_mq_producer_temp_due_at", "due_at"),
        sa.Index("ix_trade_mq_producer_temp_msg_key", "msg_key"),  # an order's timeline
    )
    inbox = sa.Table(
        "trade_mq_consumer_log",
        metadata,
        *(sa.Column(name, sa.String(100), primary_key=True) for name in ("group_name", "msg_tag", "msg_key")),
        sa.Column("msg_id", sa.String(64), nullable=False),
        sa.Column("msg_body", sa.Text, nullable=False),
        sa.Column("consumer_status", sa.Integer, nullable=False),  # 2 done (in the work's transaction)
        sa.Column("consumer_times", sa.Integer, nullable=False),
        sa.Column("consumer_timestamp", Timestamp(), nullable=False),
        sa.Column("remark", sa.String(255)),
        sa.Index("ix_trade_mq_consumer_log_msg_key", "msg_key"),  # an order's timeline
    )
    return outbox, inbox
