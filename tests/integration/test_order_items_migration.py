"""The migration that brought carts (order_0006) gives every order placed before it its one line,
on each engine: the goods, number and price of the order row, as line 0."""
import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from shop.infra.db import drop_databases, ensure_databases
from shop.infra.migrate import sqlalchemy_url, upgrade
from shop.services.catalog import PARTS
from tests.conftest import MYSQL_URL, PG_URL, _unavailable

pytestmark = pytest.mark.all_backends

ORDERS = [  # (order_id, goods_id, goods_number, goods_price): the ids past 2^53, as snowflakes are
    (2127378822805323776, 2127378823157645312, 1, "5000.00"),
    (2127378822805323777, 2127378823157645313, 3, "0.01"),
]


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'order.db'}"
    server = PG_URL if backend == "postgresql" else MYSQL_URL
    name = f"shop_test_{os.getpid()}_items_migration"
    try:
        ensure_databases(server, [name], fresh=True)
    except Exception as exc:  # noqa: BLE001
        _unavailable(backend, exc)
    return f"{server}/{name}"


def _run(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    """One statement in its own transaction, through the driver Alembic uses (asyncpg and asyncmy
    only run async; SQLite's is sync); a SELECT's rows."""
    def rows(result: sa.CursorResult[Any]) -> list[tuple[object, ...]]:
        return [tuple(r) for r in result] if result.returns_rows else []

    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                return rows(conn.execute(sa.text(sql), params))
        finally:
            engine.dispose()

    async def run() -> list[tuple[object, ...]]:
        server = create_async_engine(sqlalchemy_url(url))
        try:
            async with server.begin() as conn:
                return rows(await conn.execute(sa.text(sql), params))
        finally:
            await server.dispose()

    return asyncio.run(run())


def test_every_order_before_carts_gets_its_one_line(backend: str, tmp_path: Path) -> None:
    url = _url(backend, tmp_path)
    parts = PARTS["order"]
    try:
        upgrade(url, parts.migrations, parts.metadata, revision="order_0005")
        for order_id, goods_id, n, price in ORDERS:
            # SQLite keeps money as integer cents (infra/types.py), the servers as DECIMAL(10, 2).
            money = int(Decimal(price) * 100) if backend == "sqlite" else Decimal(price)
            _run(url, "INSERT INTO trade_order (order_id, user_id, order_status, pay_status, shipping_status, "
                       "address, goods_id, goods_number, goods_price, goods_amount, shipping_fee, order_amount, "
                       "coupon_paid, money_paid, pay_amount, add_time) VALUES (:o, 1, 1, 0, 0, 'x', :g, :n, :p, "
                       ":p, :p, :p, :p, :p, :p, '2026-11-30 12:00:00')",
                  o=order_id, g=goods_id, n=n, p=money)
        upgrade(url, parts.migrations, parts.metadata)
        lines = _run(url, "SELECT order_id, goods_id, line_no, goods_number, goods_price FROM trade_order_item "
                           "ORDER BY order_id")
    finally:
        if backend != "sqlite":
            drop_databases(PG_URL if backend == "postgresql" else MYSQL_URL, [url.rsplit("/", 1)[1]])
    got = [(int(r[0]), int(r[1]), int(r[2]), int(r[3]),
            Decimal(r[4]).scaleb(-2) if backend == "sqlite" else Decimal(r[4])) for r in lines]
    assert got == [(o, g, 0, n, Decimal(p)) for o, g, n, p in ORDERS]
