"""order lists: indexes for newest-first pages by user, by status and by pay status

Revision ID: order_0002
Revises: order_0001
Create Date: 2026-11-30 01:10:00

Each list walks one of these in order_id order (the keyset) and stops after a page; the old index
on user_id alone is covered by (user_id, order_id).
"""
from alembic import op

revision = 'order_0002'
down_revision = 'order_0001'
branch_labels = None
depends_on = None

INDEXES = {
    "ix_trade_order_user_id_order_id": ["user_id", "order_id"],
    "ix_trade_order_order_status_order_id": ["order_status", "order_id"],
    "ix_trade_order_pay_status_order_id": ["pay_status", "order_id"],
}


def upgrade() -> None:
    with op.batch_alter_table("trade_order", schema=None) as batch_op:
        for name, columns in INDEXES.items():
            batch_op.create_index(name, columns, unique=False)
        batch_op.drop_index("ix_trade_order_user_id")


def downgrade() -> None:
    with op.batch_alter_table("trade_order", schema=None) as batch_op:
        batch_op.create_index("ix_trade_order_user_id", ["user_id"], unique=False)
        for name in INDEXES:
            batch_op.drop_index(name)
