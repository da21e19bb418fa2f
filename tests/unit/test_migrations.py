"""Each service's migrations build exactly the tables its models declare (indexes included)."""
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shop.infra.config import SERVICES
from shop.services.catalog import PARTS, migrate_service


@pytest.mark.parametrize("service", SERVICES)
def test_the_migrations_match_the_models(tmp_path: Path, service: str) -> None:
    url = f"sqlite:///{tmp_path / service}.db"
    migrate_service(service, url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            # Types aside: Money and Timestamp are our own types, which SQLite reflects as its own.
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(context, PARTS[service].metadata)
    finally:
        engine.dispose()
    assert diff == []
