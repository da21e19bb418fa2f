"""user: the trace a message belongs to

Revision ID: user_0003
Revises: user_0002
Create Date: 2026-11-30 03:30:00

The outbox keeps the W3C traceparent of the work that wrote each message, so that its handling
joins that trace (infra/tracing.py); rows written before, or with telemetry off, have none.
"""
import sqlalchemy as sa
from alembic import op

revision = 'user_0003'
down_revision = 'user_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trade_mq_producer_temp", schema=None) as batch_op:
        batch_op.add_column(sa.Column("msg_trace", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trade_mq_producer_temp", schema=None) as batch_op:
        batch_op.drop_column("msg_trace")
