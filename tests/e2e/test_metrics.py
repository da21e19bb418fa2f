"""GET /metrics in every mode: the series move with the work. In the distributed mode every process
is scraped (the front door's port, and each service's SHOP_METRICS_PORT, from the target list
`shop cluster up` writes) and the samples are summed, as Prometheus would."""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster
from tests.conftest import ADMIN
from tests.support import Api, order_json, quiet_api, until

Samples = Counter[tuple[str, frozenset[tuple[str, str]]]]


@pytest.fixture
def api(client) -> Api:
    return Api(client, ADMIN)


async def scrape(client: httpx.AsyncClient, mode: Cluster | None) -> Samples:
    if mode is None:
        texts = [(await client.get("/metrics")).text]
    else:
        targets = json.loads((mode.data_dir / "prometheus-targets.json").read_text())
        assert {t["labels"]["role"] for t in targets} >= {"web", "order", "goods", "pay", "user", "coupon", "log"}
        async with httpx.AsyncClient(timeout=10) as http:
            texts = [(await http.get(f"http://{t['targets'][0]}/metrics")).text for t in targets]
    out: Samples = Counter()
    for text in texts:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] += s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include these."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def _arm(api: Api, point: str, times: int | None = None) -> None:
    r = await api.c.post("/admin/faults", json={"point": point, "action": "error", "times": times}, headers=api.admin)
    assert r.status_code == 200, r.text


async def test_the_series_move_with_the_work(api: Api, client: httpx.AsyncClient, mode: Cluster | None) -> None:
    name = f"metrics-{os.urandom(4).hex()}"
    uid = await api.create_user(name, "1000.00")
    auth = await api.login(name)
    gid = await api.create_goods("10.00", 100)
    before = await scrape(client, mode)

    # An order, a rejection (a wrong price) and a failure after the stock was taken.
    assert (await api.confirm(auth, order_json(uid, gid, "10.00"))).status_code == 200
    assert (await api.confirm(auth, order_json(uid, gid, "10.00", goodsPrice="11.00"))).status_code == 422
    await _arm(api, "order.after_reduce_stock", times=1)
    failed = await api.confirm(auth, order_json(uid, gid, "10.00"))
    assert failed.status_code == 503, failed.text
    # A payment, acknowledged to the platform.
    order = (await api.confirm(auth, order_json(uid, gid, "10.00"))).json()["data"]
    r = await api.c.post("/pay/createPayment", json={"orderId": order["orderId"], "payAmount": order["payAmount"]},
                         headers=auth)
    assert r.status_code == 200, r.text
    assert (await api.c.post(f"/sandbox/pay/{r.json()['data']['payId']}")).status_code == 200

    async def logged() -> list[Any]:  # the platform notifies on its own time; the log follows
        return await api.get(f"/admin/paylog?orderId={order['orderId']}")

    assert await until(logged, 15.0), "the payment never reached the log"
    assert (await quiet_api(api))["consistent"]
    after = await scrape(client, mode)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("shop_orders_total", outcome="confirmed") == 2
    assert grew("shop_orders_total", outcome="rejected") == 1
    assert grew("shop_orders_total", outcome="failed") == 1
    assert grew("shop_compensations_total", service="goods") == 1  # the failed order's stock came back
    assert grew("shop_barriers_total", service="user") >= 1  # it paid nothing from the balance
    assert grew("shop_saga_step_seconds_count", step="reduce_stock") == 3
    assert grew("shop_saga_step_seconds_count", step="confirm") == 2
    assert grew("shop_rpc_seconds_count", method="goods.reduce_stock", code="OK") == 3
    assert grew("shop_messages_total", group="goods-order-group", result="handled") >= 1  # the failure's cancel
    assert grew("shop_messages_total", group="log-order-group", result="handled") == 1  # the payment's log
    assert grew("shop_notify_ack_seconds_count") >= 1
    assert value(after, "shop_audit_consistent") >= 1
    assert ("shop_outbox_due", frozenset({("service", "order")})) in after


async def test_a_dead_message_is_counted_and_shown(api: Api, client: httpx.AsyncClient, mode: Cluster | None) -> None:
    name = f"metrics-dead-{os.urandom(4).hex()}"
    uid = await api.create_user(name, "100.00")
    auth = await api.login(name)
    gid = await api.create_goods("10.00", 5)
    before = await scrape(client, mode)
    try:
        await _arm(api, "goods.on_order_cancel")
        await _arm(api, "order.after_reduce_stock", times=1)
        assert (await api.confirm(auth, order_json(uid, gid, "10.00"))).status_code == 503

        async def shown() -> Samples | None:
            s = await scrape(client, mode)
            return s if value(s, "shop_messages_dead", group="goods-order-group") >= 1 else None

        after = await until(shown, 30.0)
        assert after, "the dead message never showed in shop_messages_dead"
        grown = value(after, "shop_messages_total", group="goods-order-group", result="dead") - value(
            before, "shop_messages_total", group="goods-order-group", result="dead")
        assert grown == 1
        retried = value(after, "shop_messages_total", group="goods-order-group", result="retried") - value(
            before, "shop_messages_total", group="goods-order-group", result="retried")
        assert retried >= 1
    finally:
        assert (await api.c.delete("/admin/faults", headers=api.admin)).status_code == 200
    for dead in await api.get("/admin/messages?state=dead"):
        r = await api.c.post(f"/admin/messages/{dead['id']}/replay", headers=api.admin)
        assert r.status_code == 200, r.text
    assert (await quiet_api(api))["consistent"]


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_every_named_series_is_there(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    families = _families(text)
    for name in ("shop_orders", "shop_compensations", "shop_saga_step_seconds", "shop_outbox_due",
                 "shop_outbox_oldest_due_seconds", "shop_messages", "shop_messages_dead", "shop_notify_ack_seconds",
                 "shop_rpc_seconds", "shop_audit_consistent"):
        assert name in families, name


async def test_each_process_froze_what_it_built_at_its_start(mode: Cluster | None) -> None:
    """Every process `shop cluster up` started, the sandbox's too, froze its start's objects out of Python's full
    collections (runtime.freeze_the_lasting): a full collection walked about 190,000 of them, the event
    loop stopped for 90-120 ms. The embedded shop of these tests runs inside pytest, which it leaves
    alone; test_demo checks `shop run`'s."""
    if mode is None:
        return
    targets = json.loads((mode.data_dir / "prometheus-targets.json").read_text())
    async with httpx.AsyncClient(timeout=10) as http:
        for t in targets:  # the sandbox (the payment platform's stand-in) too
            families = _families((await http.get(f"http://{t['targets'][0]}/metrics")).text)
            [sample] = families["shop_gc_frozen_objects"].samples
            assert sample.value > 50_000, (t["labels"], sample.value)
