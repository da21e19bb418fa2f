"""The user service's tables (the original's data dictionary, plus the message tables)."""
import sqlalchemy as sa

from shop.infra.ledger import ledger_table
from shop.infra.messaging import add_message_tables
from shop.infra.schema import service_metadata
from shop.infra.types import Money, Timestamp

metadata = service_metadata()

user = sa.Table(
    "trade_user",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("user_name", sa.String(255), nullable=False, unique=True),
    sa.Column("user_password", sa.String(255), nullable=False),
    sa.Column("user_mobile", sa.String(255)),
    sa.Column("user_score", sa.Integer, nullable=False, server_default="0"),
    sa.Column("user_reg_time", Timestamp(), nullable=False),
    sa.Column("user_money", Money(), nullable=False),
)

# The balance's ledger. One row per (user, order, type): a repeated payment or refund for an
# order is refused by the key. Type 0 is the opening deposit (order_id 0), 1 an order's
# payment, 2 its refund. A payment row with use_money 0 is the barrier a refund leaves when
# it finds no payment (null compensation): a payment arriving after it is refused.
user_money_log = ledger_table(
    metadata, "trade_user_money_log", entity="user_id", amount="use_money", amount_type=Money(),
    kind="money_log_type", time="create_time",
)

# Login attempts per user name, in the user service's database so that every front door (and
# every user service process) counts the same ones: a fixed window starting at its first attempt
# (epoch ms) and the attempts in it. One row per name; a successful login deletes it, and an
# expired one is reused by the name's next attempt or pruned when a new name's row is written.
login_attempt = sa.Table(
    "trade_user_login_attempt",
    metadata,
    sa.Column("user_name", sa.String(255), primary_key=True),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Index("ix_trade_user_login_attempt_window_start", "window_start"),
)

outbox, inbox = add_message_tables(metadata)
