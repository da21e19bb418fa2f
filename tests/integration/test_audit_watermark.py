"""The incremental audit on every backend: orders read once they settle behind a watermark, read
again when a later change touches them, and a full recount for what changed behind it without a
message (a row changed by hand)."""
import asyncio
import contextlib
import functools
import logging
import os

import pytest
import sqlalchemy as sa

from shop.admin.auditor import Auditor, Recount
from shop.admin.recount_child import recount_in_child
from shop.common.errors import ServiceUnavailable
from shop.infra.config import SERVICES
from shop.infra.db import Query
from shop.services.goods.models import goods, goods_number_log
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.pay.contracts import Notification
from tests.support import place, quiet, until, world

pytestmark = pytest.mark.all_backends


def _auditor(shop, **kw) -> Auditor:
    """A checker of its own, driven pass by pass (the shop's own runs in the background too)."""
    kw.setdefault("settle_ms", 0)
    return Auditor(users=shop.users, goods=shop.goods, coupons=shop.coupons, orders=shop.orders, pay=shop.pay,
                   log=shop.log, broker=shop.runtime.broker, **kw)


async def _sql(shop, service: str, stmt) -> None:
    async with shop.runtime.dbs[service].unit_of_work() as uow:
        await uow.execute(Query(stmt))
        await uow.commit()


async def _pay(shop, order) -> None:
    async def send(url, headers, body):
        await shop.pay.notify(Notification(headers["X-Pay-Timestamp"], headers["X-Pay-Nonce"],
                                           headers["X-Pay-Signature"], body))
        return True

    shop.sandbox.use_sender(send)
    payment = await shop.pay.create_payment(order.order_id, order.user_id, order.pay_amount)
    await shop.sandbox.pay(payment.pay_id)

    async def paid() -> bool:
        return (await shop.orders.find_order(order.order_id)).pay_status == PayStatus.PAID

    assert await until(paid), "the order was never marked paid"


async def test_the_watermark_passes_settled_orders_and_keeps_unconfirmed_ones_open(shop):
    w = await world(shop, money="0.00", coupon=None, stock=10)
    orders = [await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price)) for _ in range(3)]
    auditor = _auditor(shop, chunk=2)  # two readings of the range: a chunk is cut by its limit
    await quiet(shop)
    await auditor.check_pass()
    assert auditor.caught_up and auditor.watermark > max(o.order_id for o in orders)
    assert auditor.open == {} and auditor.wrong == {}
    # An order left unconfirmed (a crash mid-order) stays open, read on every pass, until it is not.
    await _sql(shop, "order", sa.text(f"UPDATE trade_order SET order_status = 0 WHERE order_id = {orders[0].order_id}"))
    for o in orders:
        auditor.open.pop(o.order_id, None)
    auditor.watermark = orders[0].order_id  # as after a restart: read them again
    await auditor.check_pass()
    assert set(auditor.open) == {orders[0].order_id}
    await _sql(shop, "order", sa.text(f"UPDATE trade_order SET order_status = 1 WHERE order_id = {orders[0].order_id}"))
    await auditor.check_pass()
    assert auditor.open == {}


async def test_a_settled_order_touched_by_a_later_change_is_read_again_and_its_violation_found(shop):
    w = await world(shop, money="0.00", coupon=None, stock=10, price="10.00")
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price))
    assert order.order_status == OrderStatus.CONFIRMED
    auditor = _auditor(shop)
    await quiet(shop)
    await auditor.check_pass()
    assert auditor.watermark > order.order_id and auditor.open == {}
    # Behind the watermark, a bug makes the goods ledger say it took two units for this order.
    t = goods_number_log
    await _sql(shop, "goods", sa.update(t).where(t.c.order_id == order.order_id).values(goods_number=2))
    await auditor.check_pass()
    assert auditor.open == {}  # nothing told the checker: only a recount would see it now
    assert (await auditor.report()).consistent
    # The order is paid later: the pay service's message names it, and it is read again.
    await _pay(shop, order)
    await quiet(shop)
    await auditor.check_pass()
    assert order.order_id in auditor.open
    await asyncio.sleep(0.01)
    await auditor.check_pass()  # wrong in two passes running
    expected = f"order {order.order_id}: confirmed for 1 of goods {w.goods_id}, goods took 2 of goods {w.goods_id}"
    assert auditor.wrong[order.order_id] == [expected]
    report = await auditor.report()
    assert not report.consistent and expected in report.violations


async def test_a_touched_order_is_read_again_once_its_settle_time_is_over_not_on_every_pass(shop):
    """Kept open SETTLE_MS after a message named it, it is read once then; an answer meanwhile reads it
    itself and reports what is wrong with it."""
    w = await world(shop, money="0.00", coupon=None, stock=10, price="10.00")
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price))
    settle_s = 1.0
    auditor = _auditor(shop, settle_ms=int(settle_s * 1000))
    read = auditor.read
    seen: list[set[int]] = []

    async def counted(scope):
        seen.append(set(scope.order_ids))
        return await read(scope)

    auditor.read = counted  # type: ignore[method-assign]
    await quiet(shop)
    await asyncio.sleep(settle_s)
    await auditor.check_pass()
    assert auditor.watermark > order.order_id and auditor.open == {}
    t = goods_number_log  # behind the watermark, a bug: the goods ledger says it took two units
    await _sql(shop, "goods", sa.update(t).where(t.c.order_id == order.order_id).values(goods_number=2))
    await _pay(shop, order)
    await quiet(shop)
    expected = f"order {order.order_id}: confirmed for 1 of goods {w.goods_id}, goods took 2 of goods {w.goods_id}"
    seen.clear()
    for _ in range(3):  # passes within its settle time: kept open, not read
        await auditor.check_pass()
    assert order.order_id in auditor.open and not any(order.order_id in ids for ids in seen), seen
    assert auditor.wrong == {}
    report = await auditor.report()  # an answer reads the open orders itself
    assert not report.consistent and expected in report.violations
    # Passes asking for the messages sent since the one before (less SKEW_MS) touch it again, which keeps
    # it open a while longer; it is read once a pass finds it due.
    seen.clear()
    for _ in range(10):
        await asyncio.sleep(settle_s / 2)
        await auditor.check_pass()
        if any(order.order_id in ids for ids in seen):
            break
    assert any(order.order_id in ids for ids in seen) and order.order_id in auditor.open  # read, still wrong
    await auditor.check_pass()  # wrong in two passes running
    assert auditor.wrong[order.order_id] == [expected]


@pytest.fixture(params=["here", "child"])
def where(request: pytest.FixtureRequest) -> str:
    """Where a recount runs: in the serving process, or in a child process (the embedded shop's)."""
    return request.param


def _recounting(shop, where: str) -> Auditor:
    run = functools.partial(recount_in_child, shop.settings) if where == "child" else None
    return _auditor(shop, run_recount=run)


async def test_a_recount_finds_a_stock_changed_behind_the_watermark(shop, where):
    w = await world(shop, money="0.00", coupon=None, stock=10, price="10.00")
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price))
    auditor = _recounting(shop, where)
    await quiet(shop)
    await auditor.check_pass()
    assert auditor.watermark > order.order_id
    await _sql(shop, "goods", sa.update(goods).where(goods.c.goods_id == w.goods_id).values(goods_number=50))
    assert (await auditor.report()).consistent  # no order changed: the answer does not read every goods
    auditor.start_recount()
    assert (await auditor.report()).json()["recount"]["state"] in ("running", "done")
    await auditor.wait_recount()
    report = (await auditor.report()).json()
    expected = f"goods {w.goods_id}: stock 50 but its ledger says 9"
    assert report["recount"]["state"] == "done" and report["recount"]["orders"] >= 1, report
    assert report["recount"]["goods"] >= 1 and report["recount"]["users"] >= 1, report
    assert expected in report["recount"]["violations"] and expected in report["violations"], report
    assert not report["consistent"]
    # The offline audit reads everything too.
    offline = await shop.operator.full_audit()
    assert expected in offline.violations and not offline.consistent


async def test_a_recount_finds_points_no_paid_order_earned(shop, where):
    w = await world(shop, money="0.00", coupon=None, stock=10, price="10.00")
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price))
    await _pay(shop, order)
    await quiet(shop)
    auditor = _recounting(shop, where)
    auditor.start_recount()
    await auditor.wait_recount()
    assert auditor.recount is not None and auditor.recount.violations == []
    await _sql(shop, "user", sa.text(f"UPDATE trade_user SET user_score = 99 WHERE user_id = {w.user_id}"))
    auditor.start_recount()
    await auditor.wait_recount()
    assert [f.text for f in auditor.recount.violations] == [
        f"user {w.user_id}: 99 points, its paid orders earn {int(order.pay_amount)}"]


async def test_the_embedded_shop_recounts_in_a_child_process_that_goes_when_it_stops(shop):
    """The shop's own auditor recounts elsewhere (its GIL stays with the requests); a recount
    cancelled (the shop stopping) takes its process with it."""
    auditor = shop.operator.auditor
    recount = auditor.start_recount()
    async def started() -> bool:
        return recount.process is not None

    assert await until(started), "no process was started for the recount"
    assert recount.process != os.getpid()
    await auditor.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(recount.process, 0)


async def test_a_recount_whose_process_fails_says_so(shop, tmp_path):
    """A child that cannot read (databases without tables, or none at all) fails the recount with
    why, rather than running for ever or reporting a clean count."""
    missing = {f"{s}_db_url": url + "_missing" for s in SERVICES if (url := getattr(shop.settings, f"{s}_db_url"))}
    recount = Recount()
    with pytest.raises(RuntimeError, match="exited with"):
        await recount_in_child(shop.settings.model_copy(update={"data_dir": tmp_path / "empty", **missing}), recount)


async def test_an_audit_pass_that_meets_a_service_down_says_so_in_one_line(shop, caplog) -> None:
    """A service stopping before the front door (every cluster's stop) or away for a moment: one line
    that says which, not a traceback; a pass that fails for another reason keeps its traceback."""
    auditor = shop.operator.auditor
    failures = iter([ServiceUnavailable("order.audit_facts is unavailable"), KeyError("a bug")])

    async def failing() -> None:
        raise next(failures)

    auditor.check_pass, auditor.pass_s = failing, 0.0
    with caplog.at_level(logging.WARNING, logger="shop.audit"):
        task = asyncio.create_task(auditor.run())
        async def both() -> bool:
            return len([r for r in caplog.records if "audit pass failed" in r.getMessage()]) >= 2
        assert await until(both)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopIteration, RuntimeError):
            await task
    down, bug = [r for r in caplog.records if "audit pass failed" in r.getMessage()][:2]
    assert down.exc_info is None and "unavailable" in down.getMessage()
    assert bug.exc_info is not None and isinstance(bug.exc_info[1], KeyError)
