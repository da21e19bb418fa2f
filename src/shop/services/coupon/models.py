"""The coupon service's tables."""
import sqlalchemy as sa

from shop.infra.ledger import ledger_table
from shop.infra.messaging import add_message_tables
from shop.infra.schema import service_metadata
from shop.infra.types import Money, Timestamp

metadata = service_metadata()

coupon = sa.Table(
    "trade_coupon",
    metadata,
    sa.Column("coupon_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("coupon_price", Money(), nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.BigInteger),
    sa.Column("is_used", sa.Integer, nullable=False, server_default="0"),
    sa.Column("used_time", Timestamp()),
    sa.Index("ix_trade_coupon_order_id", "order_id"),  # the coupons an audit's scope of orders used
)

# Not in the original: the coupon's barrier. One row per (coupon, order, type), type 1 use and
# 2 release; a release that finds no use leaves a type-1 row with applied 0, refusing a late use.
coupon_log = ledger_table(metadata, "trade_coupon_log", entity="coupon_id", amount="applied", amount_type=sa.Integer())

outbox, inbox = add_message_tables(metadata)
