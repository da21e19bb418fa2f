"""order: messages kept for timelines

Revision ID: order_0003
Revises: order_0002
Create Date: 2026-11-30 01:20:00

A sent message is kept (its due_at moved past every due range) for its order's timeline until the retention period
passes; an order's messages, handled or sent, and its ledger rows are found by its id.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = 'order_0003'
down_revision = 'order_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trade_mq_producer_temp", schema=None) as batch_op:
        batch_op.create_index("ix_trade_mq_producer_temp_msg_key", ["msg_key"], unique=False)
    with op.batch_alter_table("trade_mq_consumer_log", schema=None) as batch_op:
        batch_op.create_index("ix_trade_mq_consumer_log_msg_key", ["msg_key"], unique=False)
    # When an order was cancelled or refunded (the original keeps no time for either).
    when = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mariadb").with_variant(mysql.DATETIME(fsp=3), "mysql")
    with op.batch_alter_table("trade_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancel_time", when, nullable=True))
        batch_op.add_column(sa.Column("refund_time", when, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trade_order", schema=None) as batch_op:
        batch_op.drop_column("refund_time")
        batch_op.drop_column("cancel_time")
    with op.batch_alter_table("trade_mq_consumer_log", schema=None) as batch_op:
        batch_op.drop_index("ix_trade_mq_consumer_log_msg_key")
    with op.batch_alter_table("trade_mq_producer_temp", schema=None) as batch_op:
        batch_op.drop_index("ix_trade_mq_producer_temp_msg_key")
