"""Alembic, one history per service, each in its service's own database.

The histories live in services/<name>/migrations; env.py is shared (infra/alembic). Alembic runs
on SQLAlchemy's engines (sync pysqlite; asyncpg and asyncmy through run_sync), in a thread of its
own so it can be called from inside a running event loop.
"""
from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
SERVICES_DIR = HERE.parent / "services"


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


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "alembic"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(alembic_config(service, url), revision)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    t = threading.Thread(target=run, name=f"migrate-{service}")
    t.start()
    t.join()
    if errors:
        raise errors[0]
