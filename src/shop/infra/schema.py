"""What every service's metadata shares: the naming convention (so migrations name constraints
the same on every backend) and the message tables."""
import sqlalchemy as sa

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata() -> sa.MetaData:
    return sa.MetaData(naming_convention=NAMING)
