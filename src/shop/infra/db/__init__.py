"""Databases: the ports (base), one adapter per engine, and opening them by URL (servers)."""
from shop.infra.db.base import (
    AtOnce,
    Database,
    PooledDatabase,
    Query,
    Row,
    UnitOfWork,
    as_record,
    bind,
    find_one,
    insert_ignore,
    upsert,
)
from shop.infra.db.mysql import MysqlDatabase
from shop.infra.db.postgres import PostgresDatabase
from shop.infra.db.scope import EVERYTHING, AuditScope, ScopedRows
from shop.infra.db.servers import drop_databases, ensure_databases, open_database, weak_durability
from shop.infra.db.sqlite import SqliteDatabase

__all__ = [
    "EVERYTHING", "AtOnce", "AuditScope", "Database", "ScopedRows",
    "MysqlDatabase", "PooledDatabase", "PostgresDatabase", "Query", "Row", "SqliteDatabase",
    "UnitOfWork", "as_record", "bind", "drop_databases", "ensure_databases", "find_one", "insert_ignore",
    "open_database", "upsert", "weak_durability",
]
