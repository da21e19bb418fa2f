"""log tables

Revision ID: log_0001
Revises: 
Create Date: 2026-11-26 13:47:10.920470
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import shop.infra.types

revision = 'log_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trade_mq_consumer_log',
    sa.Column('group_name', sa.String(length=100), nullable=False),
    sa.Column('msg_tag', sa.String(length=100), nullable=False),
    sa.Column('msg_key', sa.String(length=100), nullable=False),
    sa.Column('msg_id', sa.String(length=64), nullable=False),
    sa.Column('msg_body', sa.Text(), nullable=False),
    sa.Column('consumer_status', sa.Integer(), nullable=False),
    sa.Column('consumer_times', sa.Integer(), nullable=False),
    sa.Column('consumer_timestamp', sa.DateTime().with_variant(mysql.DATETIME(fsp=3), 'mariadb').with_variant(mysql.DATETIME(fsp=3), 'mysql'), nullable=False),
    sa.Column('remark', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('group_name', 'msg_tag', 'msg_key', name=op.f('pk_trade_mq_consumer_log'))
    )
    op.create_table('trade_mq_producer_temp',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('group_name', sa.String(length=100), nullable=False),
    sa.Column('msg_topic', sa.String(length=100), nullable=False),
    sa.Column('msg_tag', sa.String(length=100), nullable=False),
    sa.Column('msg_key', sa.String(length=100), nullable=False),
    sa.Column('msg_body', sa.Text(), nullable=False),
    sa.Column('msg_status', sa.Integer(), server_default='0', nullable=False),
    sa.Column('create_time', sa.DateTime().with_variant(mysql.DATETIME(fsp=3), 'mariadb').with_variant(mysql.DATETIME(fsp=3), 'mysql'), nullable=False),
    sa.Column('due_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trade_mq_producer_temp'))
    )
    with op.batch_alter_table('trade_mq_producer_temp', schema=None) as batch_op:
        batch_op.create_index('ix_trade_mq_producer_temp_due_at', ['due_at'], unique=False)

    op.create_table('trade_pay_log',
    sa.Column('order_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('pay_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('pay_amount', sa.Numeric(precision=10, scale=2).with_variant(shop.infra.types.SqliteCents(), 'sqlite'), nullable=False),
    sa.Column('log_time', sa.DateTime().with_variant(mysql.DATETIME(fsp=3), 'mariadb').with_variant(mysql.DATETIME(fsp=3), 'mysql'), nullable=False),
    sa.PrimaryKeyConstraint('order_id', 'pay_id', name=op.f('pk_trade_pay_log'))
    )


def downgrade() -> None:
    op.drop_table('trade_pay_log')
    with op.batch_alter_table('trade_mq_producer_temp', schema=None) as batch_op:
        batch_op.drop_index('ix_trade_mq_producer_temp_due_at')

    op.drop_table('trade_mq_producer_temp')
    op.drop_table('trade_mq_consumer_log')
