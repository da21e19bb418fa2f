"""The log service's table: one row per payment accepted for an order."""
import sqlalchemy as sa

from shop.infra.messaging import add_message_tables
from shop.infra.schema import service_metadata
from shop.infra.types import Money, Timestamp

metadata = service_metadata()

pay_log = sa.Table(
    "trade_pay_log",
    metadata,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("pay_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("pay_amount", Money(), nullable=False),
    sa.Column("log_time", Timestamp(), nullable=False),
)

outbox, inbox = add_message_tables(metadata)
