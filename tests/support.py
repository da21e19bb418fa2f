"""Helpers for tests: setting up users, goods and coupons, placing orders, waiting for quiet."""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from shop.common.ids import IdWorker
from shop.infra.db import Database, open_database
from shop.runtime import Shop
from shop.services.catalog import migrate_service
from shop.services.coupon.contracts import CreateCoupon
from shop.services.goods.contracts import CreateGoods
from shop.services.order.contracts import OrderLine, PlaceOrder
from shop.services.order.domain import shipping_fee
from shop.services.user.contracts import CreateUser

D = Decimal


@dataclass
class World:
    user_id: int
    goods_id: int
    coupon_id: int | None
    price: Decimal


_names = iter(range(10**9))
# Ids for orders a test makes up (a worker id the shops under test do not use).
new_id = IdWorker(31, 31).next_id


async def world(
    shop: Shop, *, money: str = "100.00", stock: int = 10, price: str = "5000.00", coupon: str | None = "100.00",
    name: str | None = None,
) -> World:
    user_id = await shop.users.create_user(CreateUser(name or f"user-{next(_names)}", "secret", D(money)))
    goods_id = await shop.goods.create_goods(CreateGoods("iphone7", stock, D(price)))
    coupon_id = await shop.coupons.create_coupon(CreateCoupon(user_id, D(coupon))) if coupon else None
    return World(user_id, goods_id, coupon_id, D(price))


def place(
    user_id: int, goods_id: int, price: Decimal, n: int = 1, *, coupon_id: int | None = None,
    money_paid: str = "0.00", **overrides: Any,
) -> PlaceOrder:
    return cart(user_id, [(goods_id, price, n)], coupon_id=coupon_id, money_paid=money_paid, **overrides)


def cart(
    user_id: int, lines: list[tuple[int, Decimal, int]], *, coupon_id: int | None = None, money_paid: str = "0.00",
    **overrides: Any,
) -> PlaceOrder:
    """An order of several lines: (goods, price, units) each, with the right amounts."""
    items = [OrderLine(g, n, price) for g, price, n in lines]
    goods_amount = sum((i.goods_amount for i in items), D("0.00"))
    fee = shipping_fee(goods_amount)
    fields: dict[str, Any] = dict(
        user_id=user_id, items=items, shipping_fee=fee, order_amount=goods_amount + fee, address="北京",
        coupon_id=coupon_id, money_paid=D(money_paid),
    )
    fields.update(overrides)
    return PlaceOrder(**fields)


def order_json(
    user_id: int | str, goods_id: int | str, price: str, n: int = 1, *, coupon_id: int | str | None = None,
    money_paid: str = "0.00", **overrides: Any,
) -> dict[str, Any]:
    goods_amount = D(price) * n
    fee = shipping_fee(goods_amount)
    body: dict[str, Any] = {
        "userId": str(user_id), "goodsId": str(goods_id), "goodsNumber": n, "goodsPrice": price,
        "shippingFee": str(fee), "orderAmount": str(goods_amount + fee), "address": "北京", "moneyPaid": money_paid,
    }
    if coupon_id is not None:
        body["couponId"] = str(coupon_id)
    body.update(overrides)
    return body


def cart_json(
    user_id: int | str, lines: list[tuple[int | str, str, int]], *, coupon_id: int | str | None = None,
    money_paid: str = "0.00", **overrides: Any,
) -> dict[str, Any]:
    """A cart's body: (goods, price, units) a line, with the right amounts."""
    goods_amount = sum((D(price) * n for _, price, n in lines), D("0.00"))
    fee = shipping_fee(goods_amount)
    body: dict[str, Any] = {
        "userId": str(user_id), "shippingFee": str(fee), "orderAmount": str(goods_amount + fee), "address": "北京",
        "moneyPaid": money_paid,
        "items": [{"goodsId": str(g), "goodsNumber": n, "goodsPrice": price} for g, price, n in lines],
    }
    if coupon_id is not None:
        body["couponId"] = str(coupon_id)
    body.update(overrides)
    return body


async def service_db(service: str, directory: Path) -> Database:
    """One service's SQLite database in `directory`, migrated and connected (close it after)."""
    url = f"sqlite:///{directory / service}.db"
    migrate_service(service, url)
    db = open_database(url)
    await db.connect()
    return db


async def until(check: Any, timeout_s: float = 10.0, every_s: float = 0.05) -> Any:
    """check()'s first truthy value, or its last value once timeout_s has passed."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while True:
        value = await check()
        if value or loop.time() > end:
            return value
        await asyncio.sleep(every_s)


async def quiet(shop: Shop, timeout_s: float = 15.0) -> dict[str, Any]:
    """The audit once nothing is in flight (or the last one, at timeout_s): wait for this, then check
    that nothing else happened."""
    last: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal last
        last = (await shop.operator.audit()).json()
        return last["pending"] == 0

    await until(settled, timeout_s)
    return last


async def quiet_api(api: Api, timeout_s: float = 30.0) -> dict[str, Any]:
    """GET /admin/audit once nothing is in flight and it finds nothing wrong (or the last answer, at
    timeout_s). Over HTTP the shop may be the distributed one, where RabbitMQ's queue counts leave out
    the messages a consumer holds and has not acknowledged yet, and a broker coming back answers 503
    for a moment: so the wait is also for a clean report. A violation that stays is still returned."""
    last: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal last
        r = await api.c.get("/admin/audit", headers=api.admin)
        last = r.json()["data"] if r.status_code == 200 else {"status": r.status_code, "body": r.text}
        return r.status_code == 200 and last["pending"] == 0 and last["consistent"]

    await until(settled, timeout_s, every_s=0.2)
    return last


async def answered(shop: Any, pay_id: int | str, other_than: str | None = None) -> str | None:
    """The id of the platform's latest notification for a payment once the shop has answered it (other
    than `other_than`), read from the sandbox's own file: only the platform knows whether its
    notification was answered, and no HTTP call tells. `shop`: a Shop or a tests.cluster.Cluster."""
    conn = sqlite3.connect(f"file:{shop.settings.data_dir / 'sandbox.db'}?mode=ro", uri=True)
    try:
        notified, notify_id = conn.execute(
            "SELECT notified, last_notify_id FROM sandbox_trade WHERE pay_id = ?", (int(pay_id),)).fetchone()
    finally:
        conn.close()
    return notify_id if notified and notify_id != other_than else None


def most_at_once(spans: list[tuple[Any, Any]]) -> int:
    """The largest number of (start, end) spans that share an instant: how many requests were in flight
    at once."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])  # an end sorts before a start
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def state(shop: Shop, w: World) -> tuple[int, Decimal, int | None]:
    """(stock, balance, coupon is_used) for a world."""
    g = await shop.goods.find_goods(w.goods_id)
    u = await shop.users.find_user(w.user_id)
    c = await shop.coupons.find_coupon(w.coupon_id) if w.coupon_id else None
    return g.goods_number, u.user_money, (c.is_used if c else None)


class Api:
    """The HTTP surface, as a client uses it."""

    def __init__(self, client: httpx.AsyncClient, admin_token: str) -> None:
        self.c = client
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    async def create_user(self, name: str, money: str = "100.00", password: str = "secret") -> str:
        r = await self.c.post("/admin/users", json={"userName": name, "userPassword": password, "userMoney": money},
                              headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["data"]["userId"]

    async def login(self, name: str, password: str = "secret") -> dict[str, str]:
        r = await self.c.post("/user/login", json={"userName": name, "userPassword": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['data']['token']}"}

    async def create_goods(self, price: str = "5000.00", number: int = 10, name: str = "iphone7") -> str:
        r = await self.c.post("/admin/goods", json={"goodsName": name, "goodsNumber": number, "goodsPrice": price},
                              headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["data"]["goodsId"]

    async def create_coupon(self, user_id: str, price: str = "100.00") -> str:
        r = await self.c.post("/admin/coupons", json={"userId": user_id, "couponPrice": price}, headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["data"]["couponId"]

    async def get(self, path: str) -> dict[str, Any]:
        r = await self.c.get(path, headers=self.admin)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    async def confirm(self, auth: dict[str, str], body: dict[str, Any]) -> httpx.Response:
        return await self.c.post("/order/confirm", json=body, headers=auth)


@contextmanager
def served_shop(data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """`shop run` on a free port with this interpreter (so this checkout's code) and `env` over the
    caller's environment without its SHOP_ variables; its URL while it serves. Its log is
    data_dir/shop.log."""
    from shop.cluster import free_ports

    port = free_ports()  # below the ephemeral range: no outgoing connection can hold it meanwhile
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")} | env
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "shop.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shop", "run", "--port", str(port), "--data-dir",
                                 str(data_dir / "var")], env=environ, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < end, log.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tracebacks(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """The log records that carry a traceback, but for grpc's aio poller reporting, through asyncio's
    logger, that an earlier test's event loop is closed (it outlives the loop it was made on; seen
    once in CI): it says nothing about the code under test."""
    return [r for r in records if r.exc_info
            and not (r.name == "asyncio" and "PollerCompletionQueue" in r.getMessage())]
