"""log: messages kept for timelines

Revision ID: log_0002
Revises: log_0001
Create Date: 2026-11-30 01:20:00

A sent message is kept (its due_at moved past every due range) for its order's timeline until the retention period
passes; an order's messages, handled or sent, and its ledger rows are found by its id.
"""
from alembic import op

revision = 'log_0002'
down_revision = 'log_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trade_mq_producer_temp", schema=None) as batch_op:
        batch_op.create_index("ix_trade_mq_producer_temp_msg_key", ["msg_key"], unique=False)
    with op.batch_alter_table("trade_mq_consumer_log", schema=None) as batch_op:
        batch_op.create_index("ix_trade_mq_consumer_log_msg_key", ["msg_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trade_mq_consumer_log", schema=None) as batch_op:
        batch_op.drop_index("ix_trade_mq_consumer_log_msg_key")
    with op.batch_alter_table("trade_mq_producer_temp", schema=None) as batch_op:
        batch_op.drop_index("ix_trade_mq_producer_temp_msg_key")
