"""The payment platform stand-in's one table.

It plays an external system, so it is not one of the shop's migrated services: its schema is
created with `metadata.create_all` when the sandbox starts.
"""
import sqlalchemy as sa

from shop.infra.schema import service_metadata
from shop.infra.types import Money, Timestamp

metadata = service_metadata()

CREATED, PAID, REFUNDED = "CREATED", "PAID", "REFUNDED"

sandbox_trade = sa.Table(
    "sandbox_trade",
    metadata,
    sa.Column("trade_no", sa.String(64), primary_key=True),
    sa.Column("pay_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("notify_url", sa.String(1000), nullable=False),
    sa.Column("state", sa.String(10), nullable=False),  # CREATED | PAID | REFUNDED
    sa.Column("create_time", Timestamp(), nullable=False),
    sa.Column("pay_time", Timestamp()),
    sa.Column("refund_time", Timestamp()),
    # Failed sends of the current notification; indexes the retry schedule.
    sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0"),
    # Epoch ms when the notification is next sent; NULL when there is nothing to send. It stays
    # due while a send is in flight, so a crash mid-send sends it again after the restart.
    sa.Column("next_notify_at", sa.BigInteger),
    sa.Column("notified", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_notify_id", sa.String(64)),
    sa.Index("ix_sandbox_trade_next_notify_at", "next_notify_at"),
)


def create_schema(path: str) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
