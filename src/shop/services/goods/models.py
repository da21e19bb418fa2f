"""The goods service's tables."""
import sqlalchemy as sa

from shop.infra.ledger import ledger_table
from shop.infra.messaging import add_message_tables
from shop.infra.schema import service_metadata
from shop.infra.types import Money, Timestamp

metadata = service_metadata()

goods = sa.Table(
    "trade_goods",
    metadata,
    sa.Column("goods_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("goods_name", sa.String(255), nullable=False),
    sa.Column("goods_number", sa.Integer, nullable=False),
    sa.Column("goods_price", Money(), nullable=False),
    sa.Column("goods_desc", sa.String(255)),
    sa.Column("add_time", Timestamp(), nullable=False),
)

# The stock's ledger. The original keys it (goods_id, order_id), which would refuse the
# restore row of a cancelled order: it is keyed by operation too. log_type 0 is the opening stock
# put in when the goods is created (order_id 0), 1 an order's reduction, 2 its restoration, 3 an
# operator's restock (POST /admin/goods/{goodsId}/stock): a fresh id in order_id, which no order
# has (or, under an Idempotency-Key, a negative one derived from it: infra/ledger.adjustment_key),
# and the signed change in goods_number (negative: a removal). A reduction row with
# goods_number 0 is the barrier a restore leaves when it finds no reduction.
goods_number_log = ledger_table(
    metadata, "trade_goods_number_log", entity="goods_id", amount="goods_number", amount_type=sa.Integer(),
)

outbox, inbox = add_message_tables(metadata)
