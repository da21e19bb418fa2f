"""The pay service's tables."""
import sqlalchemy as sa

from shop.infra.messaging import add_message_tables
from shop.infra.schema import service_metadata
from shop.infra.types import Money, Timestamp

metadata = service_metadata()

# One payment per order (the key on order_id): createPayment returns the open one again.
pay = sa.Table(
    "trade_pay",
    metadata,
    sa.Column("pay_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("pay_amount", Money(), nullable=False),
    sa.Column("is_paid", sa.Integer, nullable=False),  # 1 not paid, 2 paid
    sa.Column("trade_no", sa.String(64)),
    sa.Column("create_time", Timestamp(), nullable=False),
    sa.Column("paid_time", Timestamp()),
    # Not in the original: a paid payment given back through the platform (refund, late payment).
    sa.Column("is_refunded", sa.Integer, nullable=False, server_default="0"),
    sa.Column("refund_time", Timestamp()),
)

outbox, inbox = add_message_tables(metadata)
