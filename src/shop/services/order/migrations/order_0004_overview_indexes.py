"""order: indexes for the operator's overview

Revision ID: order_0004
Revises: order_0003
Create Date: 2026-11-30 03:20:00

The console's overview, polled every few seconds, counts the orders cancelled and refunded in the
last minutes: a range of each of these indexes, never a scan of the table.
"""
from alembic import op

revision = 'order_0004'
down_revision = 'order_0003'
branch_labels = None
depends_on = None

INDEXES = {
    "ix_trade_order_cancel_time": ["cancel_time"],
    "ix_trade_order_refund_time": ["refund_time"],
}


def upgrade() -> None:
    with op.batch_alter_table("trade_order", schema=None) as batch_op:
        for name, columns in INDEXES.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trade_order", schema=None) as batch_op:
        for name in INDEXES:
            batch_op.drop_index(name)
