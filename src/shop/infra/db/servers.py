"""Opening a service's database by URL, making or dropping databases on a server, and reading
a server's durability settings."""
from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.engine import make_url

from shop.infra.db.base import Database
from shop.infra.db.durability import SETTINGS, durability_warnings
from shop.infra.db.mysql import MysqlDatabase
from shop.infra.db.mysql import server_args as mysql_args
from shop.infra.db.postgres import PostgresDatabase
from shop.infra.db.postgres import server_args as postgres_args
from shop.infra.db.sqlite import Durability, SqliteDatabase


def open_database(url: str, sqlite_durability: Durability = "barrier") -> Database:
    """sqlite:///path, postgresql://user@host/db, mysql://root@host/db (driver suffixes allowed)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SqliteDatabase(make_url(url).database or ":memory:", sqlite_durability)
    if backend == "postgresql":
        return PostgresDatabase(url)
    if backend in ("mysql", "mariadb"):
        return MysqlDatabase(url)
    raise ValueError(f"unsupported database URL: {url}")


def drop_databases(server_url: str, names: list[str]) -> None:
    """Drop the named databases where they exist. Blocking, like ensure_databases."""
    ensure_databases(server_url, names, fresh=True, create=False)


def ensure_databases(server_url: str, names: list[str], *, fresh: bool = False, create: bool = True) -> None:
    """Create the named databases on a PostgreSQL or MySQL/MariaDB server unless they exist (fresh:
    drop them first). Blocking: call it before the loop starts, or from a thread."""

    u = make_url(server_url)
    backend = u.get_backend_name()
    for name in names:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a plain database name: {name!r}")

    async def postgresql() -> None:
        import asyncpg

        conn = await asyncpg.connect(**{**postgres_args(server_url), "database": "postgres"})
        try:
            for name in names:
                if fresh:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                if create and not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                    await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def mysql() -> None:
        import asyncmy

        conn = await asyncmy.connect(**{**mysql_args(server_url), "database": None})
        try:
            async with conn.cursor() as cur:
                for name in names:
                    if fresh:
                        await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                    # Looked up first: IF NOT EXISTS on one that exists raises a warning asyncmy prints.
                    await cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
                    if create and not await cur.fetchone():
                        await cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()

    if backend == "postgresql":
        asyncio.run(postgresql())
    elif backend in ("mysql", "mariadb"):
        asyncio.run(mysql())
    else:
        raise ValueError(f"databases are created on PostgreSQL or MySQL/MariaDB, not {backend}")


def weak_durability(urls: list[str]) -> list[str]:
    """The warnings (durability.durability_warnings) for the databases at these URLs, read through a
    connection to each as the shop makes it, so per-database and per-role settings count; SQLite's
    are the shop's own (infra/db/sqlite.py). Blocking, like ensure_databases."""
    found = []  # (dialect, server, database, url)
    for url in urls:
        u = make_url(url)
        dialect = {"mariadb": "mysql"}.get(u.get_backend_name(), u.get_backend_name())
        if dialect in SETTINGS and u.database:
            args = (postgres_args if dialect == "postgresql" else mysql_args)(url)
            found.append((dialect, f"{args['host']}:{args['port']}", u.database, url))

    async def read() -> list[dict[str, Any]]:
        return [await _durability_settings(dialect, url) for dialect, _, _, url in found]

    servers: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for (dialect, server, database, _), settings in zip(found, asyncio.run(read()) if found else [], strict=True):
        servers.setdefault((dialect, server), {})[database] = settings
    return [w for (dialect, server), seen in servers.items() for w in durability_warnings(server, dialect, seen)]


async def _durability_settings(dialect: str, url: str) -> dict[str, Any]:
    names = SETTINGS[dialect]
    if dialect == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(**postgres_args(url))
        try:
            rows = await conn.fetch("SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])", list(names))
            return {r["name"]: r["setting"] for r in rows}
        finally:
            await conn.close()
    import asyncmy

    conn = await asyncmy.connect(**mysql_args(url))
    try:
        async with conn.cursor() as cur:
            # @@name: the session's value where the variable has one, else the server's.
            await cur.execute("SELECT " + ", ".join(f"@@{name}" for name in names))
            return dict(zip(names, await cur.fetchone(), strict=True))
    finally:
        conn.close()
