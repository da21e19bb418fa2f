"""coupon: coupons found by the order that used them

Revision ID: coupon_0004
Revises: coupon_0003
Create Date: 2026-11-30 03:40:00

The audit reads the facts of a range of orders at a time (AuditScope): the coupons those orders
used are found through this index, not by a scan of every coupon.
"""
from alembic import op

revision = 'coupon_0004'
down_revision = 'coupon_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trade_coupon", schema=None) as batch_op:
        batch_op.create_index("ix_trade_coupon_order_id", ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trade_coupon", schema=None) as batch_op:
        batch_op.drop_index("ix_trade_coupon_order_id")
