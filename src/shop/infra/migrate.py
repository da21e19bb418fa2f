"""Alembic, one history per service, each in its service's own database.

Each service keeps its history beside its tables (services/<name>/migrations) and hands both
here (services/catalog.py); env.py is shared (infra/alembic). Alembic runs
on SQLAlchemy's engines (sync pysqlite; asyncpg and asyncmy through run_sync), in a thread of its
own so it can be called from inside a running event loop.
"""
from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent


def sqlalchemy_url(url: str) -> str:
    """The URL Alembic's engine needs: our drivers named explicitly."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "postgresql":
        u = u.set(drivername="postgresql+asyncpg")
    elif backend in ("mysql", "mariadb"):
        u = u.set(drivername="mysql+asyncmy")
    elif backend == "sqlite":
        u = u.set(drivername="sqlite")
    return u.render_as_string(hide_password=False)


def alembic_config(url: str, versions: Path, metadata: sa.MetaData) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "alembic"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(versions))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    cfg.attributes["target_metadata"] = metadata
    return cfg


def upgrade(url: str, versions: Path, metadata: sa.MetaData, revision: str = "head") -> None:
    """Apply the history in `versions` (the tables `metadata` describes) to the database at `url`."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(alembic_config(url, versions, metadata), revision)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    t = threading.Thread(target=run, name=f"migrate-{versions.parent.name}")
    t.start()
    t.join()
    if errors:
        raise errors[0]
