"""order: an order's lines (carts)

Revision ID: order_0006
Revises: order_0005
Create Date: 2026-11-30 12:40:00

Every order placed before carts has one line: its goods, number and price, copied from the order
row (which keeps them, as the first line's). Money is copied as stored (cents on SQLite, DECIMAL
elsewhere): the two columns have the same type.
"""
import sqlalchemy as sa
from alembic import op

import shop.infra.types

revision = 'order_0006'
down_revision = 'order_0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trade_order_item",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("goods_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("goods_number", sa.Integer(), nullable=False),
        sa.Column("goods_price", shop.infra.types.Money(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "goods_id", name=op.f("pk_trade_order_item")),
    )
    op.execute(
        "INSERT INTO trade_order_item (order_id, goods_id, line_no, goods_number, goods_price) "
        "SELECT order_id, goods_id, 0, goods_number, goods_price FROM trade_order"
    )


def downgrade() -> None:
    op.drop_table("trade_order_item")
