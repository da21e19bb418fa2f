"""The order service's tables."""
import sqlalchemy as sa

from shop.infra.messaging import add_message_tables
from shop.infra.schema import service_metadata
from shop.infra.types import Money, Timestamp

metadata = service_metadata()

order = sa.Table(
    "trade_order",
    metadata,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("order_status", sa.Integer, nullable=False),
    sa.Column("pay_status", sa.Integer, nullable=False),
    sa.Column("shipping_status", sa.Integer, nullable=False),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("consignee", sa.String(255)),
    sa.Column("goods_id", sa.BigInteger, nullable=False),
    sa.Column("goods_number", sa.Integer, nullable=False),
    sa.Column("goods_price", Money(), nullable=False),
    sa.Column("goods_amount", Money(), nullable=False),
    sa.Column("shipping_fee", Money(), nullable=False),
    sa.Column("order_amount", Money(), nullable=False),
    sa.Column("coupon_id", sa.BigInteger),
    sa.Column("coupon_paid", Money(), nullable=False),
    sa.Column("money_paid", Money(), nullable=False),
    sa.Column("pay_amount", Money(), nullable=False),
    sa.Column("add_time", Timestamp(), nullable=False),
    sa.Column("confirm_time", Timestamp()),
    sa.Column("pay_time", Timestamp()),
    sa.Column("cancel_time", Timestamp()),  # not in the original: when it was cancelled, for its timeline
    sa.Column("refund_time", Timestamp()),
    # The lists, newest first (services/order/repository.py): one index per filter, in id order.
    sa.Index("ix_trade_order_user_id_order_id", "user_id", "order_id"),
    sa.Index("ix_trade_order_order_status_order_id", "order_status", "order_id"),
    sa.Index("ix_trade_order_pay_status_order_id", "pay_status", "order_id"),
    # The operator's overview counts the cancellations and refunds of the last minutes.
    sa.Index("ix_trade_order_cancel_time", "cancel_time"),
    sa.Index("ix_trade_order_refund_time", "refund_time"),
)

# An order's lines (a cart's; the original's single goods is one line). The order row keeps the
# first line's goods, number and price (the original's columns, which its clients read) and the sum
# of the lines as goods_amount.
order_item = sa.Table(
    "trade_order_item",
    metadata,
    sa.Column("order_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("goods_id", sa.BigInteger, primary_key=True, autoincrement=False),  # no goods twice
    sa.Column("line_no", sa.Integer, nullable=False),  # the client's order of the lines, from 0
    sa.Column("goods_number", sa.Integer, nullable=False),
    sa.Column("goods_price", Money(), nullable=False),
)

outbox, inbox = add_message_tables(metadata)
