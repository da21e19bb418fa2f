"""Column types that mean the same on every backend.

SQLite has no decimal type: a DECIMAL column there has NUMERIC affinity and arithmetic in
binary floating point. Money is kept there as integer cents (declared type CENTS, adapted
in infra.db), so `user_money - :m` stays exact; PostgreSQL and MySQL keep DECIMAL(10,2).
"""
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.types import UserDefinedType


class SqliteCents(UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "CENTS"


def Money() -> sa.types.TypeEngine:  # noqa: N802 - reads as a type in table definitions
    return sa.Numeric(10, 2).with_variant(SqliteCents(), "sqlite")


def Timestamp() -> sa.types.TypeEngine:  # noqa: N802
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql", "mariadb")
