"""user: login attempts, for throttling

Revision ID: user_0004
Revises: user_0003
Create Date: 2026-11-30 06:40:00

After 5 failed logins for one user name within 5 minutes, further attempts answer 429 until the
window passes (API.md "Limits and formats"). The count lives in the user service's database, so
it holds across every front door and user service process.
"""
import sqlalchemy as sa
from alembic import op

revision = 'user_0004'
down_revision = 'user_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trade_user_login_attempt",
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_name", name=op.f("pk_trade_user_login_attempt")),
    )
    with op.batch_alter_table("trade_user_login_attempt", schema=None) as batch_op:
        batch_op.create_index("ix_trade_user_login_attempt_window_start", ["window_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trade_user_login_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_trade_user_login_attempt_window_start")
    op.drop_table("trade_user_login_attempt")
