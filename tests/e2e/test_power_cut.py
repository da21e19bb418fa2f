"""A power cut must equal a crash at an earlier instant (issue 11, point 3).

The embedded shop keeps a SQLite file per service, the broker's and the sandbox's. A killed process
loses nothing committed; a power cut loses what the disk had not been told to keep, and each file
may lose a different suffix of its history. The shop is power-safe if whatever a cut leaves is a
state a crash could have left: every commit another file or a client acted on survived, so each
lost commit is one nothing depended on yet, as if the process had died just before it (which the
armed cancel already repairs).

Simulated faithfully: `shop run` under tests/synced_only.c (LD_PRELOAD), which copies each file of
the data dir into a shadow dir whenever the file is synced, so the shadow holds, per file, exactly
what was synced. Load runs (orders, some failing at a fault point, payments at the sandbox, cancels),
the shop is SIGKILLed at a random instant, and a shop started on the shadow must settle into a
consistent audit with nothing pending or dead, and keep every promise its answers made before the cut.

The same cut with SHOP_SQLITE_DURABILITY=normal (no durability barrier) must break something: the
test can fail.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_crash import ADMIN, ShopProcess
from tests.support import Api, order_json, quiet_api
from tests.synced_only import restartable, shim_env

USERS = 6
COUPONS = 40  # per user, more than a cut's load can use
PRICE = "50.00"  # under 100: a shipping fee of 10.00
FAULT_POINTS = ("order.after_reduce_stock", "order.after_use_coupon", "order.after_reduce_money")


# --- the shop before the cuts --------------------------------------------------------------------------

@dataclass
class Buyer:
    user_id: str
    auth: dict[str, str]
    coupons: list[str]


@dataclass
class Base:
    """A stopped shop's data dir with goods, buyers and their coupons, logged in (the token secret is
    fixed, so the tokens hold on every copy)."""

    data_dir: Path
    goods_id: str
    buyers: list[Buyer]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    sp = ShopProcess(tmp_path_factory.mktemp("base") / "data")
    sp.start()
    try:
        b = asyncio.run(_populate(sp))
    finally:
        sp.stop()
    yield b


async def _populate(sp: ShopProcess) -> Base:
    async with httpx.AsyncClient(base_url=sp.base, timeout=15) as c:
        api = Api(c, ADMIN)
        goods_id = await api.create_goods(PRICE, number=1_000_000)
        buyers = []
        for i in range(USERS):
            user_id = await api.create_user(f"power-{i}", money="100000.00")
            coupons = [await api.create_coupon(user_id, "5.00") for _ in range(COUPONS)]
            buyers.append(Buyer(user_id, await api.login(f"power-{i}"), coupons))
    return Base(sp.data_dir, goods_id, buyers)


# --- load, and what its answers promised ----------------------------------------------------------------

@dataclass
class Promises:
    """What the shop told its clients before the cut, by order id."""

    confirmed: set[str] = field(default_factory=set)  # confirm answered success
    failed: set[str] = field(default_factory=set)  # confirm answered a failure for a saved order
    cancelling: set[str] = field(default_factory=set)  # cancel asked: cancelled or not, if never answered
    cancelled: set[str] = field(default_factory=set)  # cancel answered success
    payments: dict[str, str] = field(default_factory=dict)  # createPayment answered: pay id -> order id
    paid: set[str] = field(default_factory=set)  # the platform took the money (the sandbox answered)
    refused: list[str] = field(default_factory=list)  # answers no client should ever get

    def count(self) -> int:
        return len(self.confirmed) + len(self.failed)


async def _buyer(c: httpx.AsyncClient, goods_id: str, b: Buyer, p: Promises) -> None:
    """Orders, one after another; of the confirmed ones a third is cancelled and a third paid."""
    coupons = list(b.coupons)
    for i in range(10**9):
        coupon = coupons.pop() if i % 2 and coupons else None
        r = await c.post("/order/confirm", json=order_json(b.user_id, goods_id, PRICE, coupon_id=coupon,
                                                          money_paid="1.00"), headers=b.auth)
        data = r.json().get("data") or {}
        if r.status_code != 200:
            if data.get("orderId"):  # failed at an armed fault, after the pre-order was saved
                p.failed.add(data["orderId"])
            else:
                p.refused.append(f"confirm: {r.status_code} {r.text}")
            continue
        order_id = data["orderId"]
        p.confirmed.add(order_id)
        if i % 3 == 0:
            p.cancelling.add(order_id)
            r = await c.post(f"/order/{order_id}/cancel", headers=b.auth)
            if r.status_code != 200:
                p.refused.append(f"cancel: {r.status_code} {r.text}")
                continue
            p.cancelled.add(order_id)
        elif i % 3 == 1:
            r = await c.post("/pay/createPayment", json={"orderId": order_id, "payAmount": data["payAmount"]},
                             headers=b.auth)
            if r.status_code != 200:
                p.refused.append(f"createPayment: {r.status_code} {r.text}")
                continue
            pay_id = r.json()["data"]["payId"]
            p.payments[pay_id] = order_id
            r = await c.post(f"/sandbox/pay/{pay_id}")
            if r.status_code != 200:
                p.refused.append(f"sandbox pay: {r.status_code} {r.text}")
                continue
            p.paid.add(order_id)


async def _faults(c: httpx.AsyncClient, rnd: random.Random) -> None:
    """Now and then an order fails at a fault point, so compensations are under way at the cut."""
    while True:
        r = await c.post("/admin/faults", json={"point": rnd.choice(FAULT_POINTS), "action": "error", "times": 1},
                         headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        await asyncio.sleep(rnd.uniform(0.05, 0.3))


async def load_until_cut(sp: ShopProcess, base: Base, rnd: random.Random, after_s: float) -> Promises:
    """Load from every buyer; once the first promises (a failed order among them) are made, and
    `after_s` seconds later, SIGKILL the shop."""
    p = Promises()
    async with httpx.AsyncClient(base_url=sp.base, timeout=30) as c:
        tasks = [asyncio.create_task(_buyer(c, base.goods_id, b, p)) for b in base.buyers]
        tasks.append(asyncio.create_task(_faults(c, rnd)))
        try:
            while p.count() < 10 or not p.failed:
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
                await asyncio.sleep(0.02)
            await asyncio.sleep(after_s)
            assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
            sp.kill()  # the cut: what the shim copied is all the disk has
        finally:
            for t in tasks:
                t.cancel()
            # A request caught by the cut fails; its answer promised nothing.
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, httpx.TransportError):
                    await t
    return p


# --- after the cut ------------------------------------------------------------------------------------

async def broken_after_restart(sp: ShopProcess, p: Promises, quiet_s: float) -> list[str]:
    """Everything wrong with the shop restarted on what the cut left, once it is quiet (or `quiet_s`
    has passed): the audit's findings, work never finished, and broken promises."""
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=sp.base, timeout=30) as c:
        api = Api(c, ADMIN)

        async def order(order_id: str) -> dict[str, Any] | None:
            r = await c.get(f"/admin/orders/{order_id}", headers=api.admin)
            return r.json()["data"] if r.status_code == 200 else None

        # The platform took these payments: it notifies until the shop answers, restart or not.
        end = asyncio.get_running_loop().time() + quiet_s
        waiting = set(p.paid)
        while waiting and asyncio.get_running_loop().time() < end:
            waiting = {o for o in waiting if ((await order(o)) or {}).get("payStatus") != 2}
            await asyncio.sleep(0.2)
        problems += [f"order {o}: paid at the platform, not paid at the shop" for o in sorted(waiting)]

        audit = await quiet_api(api, max(1.0, end - asyncio.get_running_loop().time()))
        if audit.get("violations") or audit.get("pending") or not audit.get("consistent"):
            problems.append(f"audit: {audit}")
        dead = await api.get("/admin/messages?state=dead")
        problems += [f"dead message: {m}" for m in dead]

        for order_id in sorted(p.confirmed | p.failed):
            told = 2 if order_id in p.cancelled or order_id in p.failed else 1
            may = {told, 2} if order_id in p.cancelling else {told}
            got = await order(order_id)
            if got is None or got["orderStatus"] not in may:
                problems.append(f"order {order_id}: told status {told}, now {got and got['orderStatus']}")
        for pay_id, order_id in sorted(p.payments.items()):
            r = await c.get(f"/admin/payments/{pay_id}", headers=api.admin)
            if r.status_code != 200:
                problems.append(f"payment {pay_id} of order {order_id}: created, now {r.status_code}")
    return problems


async def cut(base: Base, shim: Path, where: Path, rnd: random.Random, durability: str, quiet_s: float,
              ) -> tuple[Promises, list[str]]:
    """One power cut at a random instant under load, then a shop on what survived: the promises made
    and the problems found."""
    run_dir, shadow = where / "run" / "data", where / "shadow" / "data"
    shutil.copytree(base.data_dir, run_dir)
    shutil.copytree(base.data_dir, shadow)
    sp = ShopProcess(run_dir)
    sp.env |= shim_env(shim, run_dir, shadow) | {"SHOP_SQLITE_DURABILITY": durability}
    sp.start()
    try:
        promises = await load_until_cut(sp, base, rnd, rnd.uniform(0.3, 2.5))
    finally:
        sp.kill()
    after = ShopProcess(restartable(shadow))
    after.env["SHOP_SQLITE_DURABILITY"] = durability
    # The same machine after the cut: the same port, where the platform's stored notify URLs point.
    after.port, after.base = sp.port, sp.base
    after.start()
    try:
        problems = await broken_after_restart(after, promises, quiet_s)
    finally:
        after.stop()
    assert not promises.refused, f"answers no client should get: {promises.refused[:5]}\n{sp.logs()}"
    return promises, problems


# --- the tests ----------------------------------------------------------------------------------------

async def test_a_power_cut_under_load_is_a_crash_at_an_earlier_instant(
    synced_only: Path, base: Base, tmp_path: Path,
) -> None:
    seed = random.randrange(10**6)
    rnd = random.Random(seed)
    for n in range(3):
        promises, problems = await cut(base, synced_only, tmp_path / f"cut-{n}", rnd, "barrier", quiet_s=20)
        assert promises.confirmed and promises.failed, f"cut {n} (seed {seed}): too little happened: {promises}"
        assert problems == [], f"cut {n} (seed {seed}), after {promises.count()} orders: {problems[:10]}"


async def test_without_the_barrier_a_power_cut_breaks_promises(synced_only: Path, base: Base, tmp_path: Path) -> None:
    """The negative control: synchronous=NORMAL alone syncs a file only at its checkpoints, so a cut
    takes back orders the clients were told had succeeded."""
    seed = random.randrange(10**6)
    promises, problems = await cut(base, synced_only, tmp_path, random.Random(seed), "normal", quiet_s=8)
    assert promises.confirmed, f"seed {seed}: nothing was promised: {promises}"
    assert problems, f"seed {seed}: a power cut without the barrier broke nothing after {promises.count()} orders"
