"""The front door's sold-out memory (services/order/sold_out.py), on a hand-turned clock."""
from __future__ import annotations

import asyncio
from decimal import Decimal as D
from typing import Any

import pytest
from pydantic import ValidationError

from shop.common.codes import ShopCode
from shop.common.errors import ServiceUnavailable, ShopError
from shop.infra import metrics
from shop.infra.config import Settings
from shop.services.goods.contracts import Goods, StockLine, check_line
from shop.services.order.contracts import OrderLine, PlaceOrder
from shop.services.order.sold_out import FORGET_AFTER_S, SoldOut, SoldOutGate, sold_out_goods

TTL = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def left(goods_id: int, n: int) -> ShopError:
    return ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, data={"goodsId": str(goods_id), "goodsNumber": n})


def sold_out(memory: SoldOut, goods_id: int) -> None:
    """An order let through that finds the goods with nothing left."""
    a = memory.admit([goods_id])
    assert a.refused is None
    memory.settle(a, left(goods_id, 0))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> SoldOut:
    return SoldOut(TTL, clock)


def test_only_a_refusal_with_nothing_left_is_remembered(memory: SoldOut) -> None:
    for exc in (left(1, 3), ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH), ShopError(ShopCode.SHOP_MONEY_PAID_INVALID),
                ServiceUnavailable(), RuntimeError("boom"), None):
        memory.settle(memory.admit([1]), exc)
        assert not memory.remembered(1) and memory.admit([1]).refused is None, exc
    sold_out(memory, 1)
    assert memory.remembered(1) and memory.admit([1]).refused == 1


def test_other_goods_are_not_affected(memory: SoldOut) -> None:
    sold_out(memory, 1)
    assert memory.admit([2]).refused is None and not memory.remembered(2)
    assert memory.admit([2, 1]).refused == 1  # a cart with a sold-out line


def test_a_refusal_naming_another_goods_marks_that_goods(memory: SoldOut) -> None:
    a = memory.admit([1, 2])
    memory.settle(a, left(2, 0))
    assert memory.admit([1]).refused is None and memory.admit([2]).refused == 2


def test_the_memory_ends_after_the_ttl_and_one_probe_goes_through(memory: SoldOut, clock: Clock) -> None:
    sold_out(memory, 1)
    clock.now += TTL - 0.001
    assert memory.admit([1]).refused == 1
    clock.now += 0.001
    probe = memory.admit([1])
    assert probe.refused is None and probe.probes == (1,)
    # Single flight: while the probe is out, everyone else is still refused.
    assert [memory.admit([1]).refused for _ in range(5)] == [1] * 5
    memory.settle(probe, None)  # it sold: forgotten
    assert not memory.remembered(1)
    assert memory.admit([1]).refused is None and memory.admit([1]).probes == ()


def test_a_probe_that_finds_it_still_sold_out_re_arms_from_when_it_was_let_through(memory: SoldOut,
                                                                                    clock: Clock) -> None:
    sold_out(memory, 1)
    clock.now += TTL
    probe = memory.admit([1])
    clock.now += 0.1  # the probe took 0.1 s
    memory.settle(probe, left(1, 0))
    assert memory.admit([1]).refused == 1
    clock.now += TTL - 0.1 - 0.001
    assert memory.admit([1]).refused == 1
    clock.now += 0.001  # a TTL after the probe was let through, not after its answer
    assert memory.admit([1]).probes == (1,)


@pytest.mark.parametrize("exc", [ShopError(ShopCode.SHOP_MONEY_PAID_INVALID), left(1, 2), ServiceUnavailable(),
                                 RuntimeError("boom"), asyncio.CancelledError()])
def test_a_probe_that_meets_anything_else_clears_the_memory(memory: SoldOut, clock: Clock,
                                                            exc: BaseException) -> None:
    sold_out(memory, 1)
    clock.now += TTL
    probe = memory.admit([1])
    memory.settle(probe, exc)
    assert not memory.remembered(1)
    assert [memory.admit([1]).refused for _ in range(3)] == [None] * 3  # the normal path, for everyone


def test_a_hung_probe_holds_the_others_back_for_one_ttl_at_most(memory: SoldOut, clock: Clock) -> None:
    sold_out(memory, 1)
    clock.now += TTL
    hung = memory.admit([1])
    assert hung.probes == (1,)
    clock.now += TTL - 0.001
    assert memory.admit([1]).refused == 1
    clock.now += 0.001
    again = memory.admit([1])
    assert again.refused is None and again.probes == (1,)  # the next one probes in its place
    assert memory.admit([1]).refused == 1
    memory.settle(hung, left(1, 0))  # its late answer dates from long ago: it neither arms nor frees
    assert memory.admit([1]).refused == 1
    memory.settle(again, None)
    assert memory.admit([1]).refused is None


def test_a_memory_nobody_asks_about_is_forgotten(memory: SoldOut, clock: Clock) -> None:
    sold_out(memory, 1)
    clock.now += TTL + FORGET_AFTER_S - 0.001
    assert memory.refusing([1]) is None and memory  # still there: the next order would probe
    clock.now += 0.001
    a = memory.admit([1])
    assert a.refused is None and a.probes == () and not memory  # forgotten: the normal path


def test_a_slow_refusal_is_dated_from_when_it_was_let_through(memory: SoldOut, clock: Clock) -> None:
    a = memory.admit([1])
    clock.now += 2 * TTL
    memory.settle(a, left(1, 0))
    assert not memory.remembered(1) and memory.admit([1]).refused is None


def test_the_ttl_is_at_most_half_a_second() -> None:
    SoldOut(0.5)  # a memory's TTL after the stock's return, then a probe's hold of a TTL: 1 s in all
    for bad in (0, -1, 0.501, 1.0, 5):
        with pytest.raises(ValueError):
            SoldOut(bad)
        with pytest.raises(ValidationError):
            Settings(sold_out_ttl_s=bad)
    assert Settings().sold_out_ttl_s == 0.5


def test_what_a_refusal_says_is_left() -> None:
    with pytest.raises(ShopError) as e:
        check_line(StockLine(7, 1, D("1.00")), Goods(7, "g", 0, D("1.00"), None, None))  # type: ignore[arg-type]
    assert e.value.data == {"goodsId": "7", "goodsNumber": 0} and sold_out_goods(e.value) == 7
    with pytest.raises(ShopError) as e:
        check_line(StockLine(7, 1, D("2.00")), Goods(7, "g", 0, D("1.00"), None, None))  # type: ignore[arg-type]
    assert e.value.code is ShopCode.SHOP_GOODS_PRICE_INVALID and e.value.data == {"goodsId": "7"}
    assert sold_out_goods(left(7, 1)) is None and sold_out_goods(ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH)) is None
    assert sold_out_goods(left(7, 0).with_data({"goodsId": "7", "goodsNumber": 0, "orderId": "9"})) == 7


class FakeOrders:
    def __init__(self) -> None:
        self.calls = 0
        self.answer: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def confirm_order(self, cmd: PlaceOrder) -> Any:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is not None:
            raise self.answer
        return "order"

    async def find_order(self, order_id: int) -> Any:
        return ("found", order_id)


def place(*goods_ids: int) -> PlaceOrder:
    """An order of one unit of each goods (1 when none is named)."""
    return PlaceOrder(user_id=1, items=[OrderLine(g, 1, D("1.00")) for g in goods_ids or (1,)],
                      shipping_fee=D("10.00"), order_amount=D("11.00"), address="a")


def sold_out_answers() -> float:
    return metrics.SOLD_OUT._value.get()


async def test_the_gate_answers_without_calling_and_lets_one_probe_through(clock: Clock) -> None:
    inner = FakeOrders()
    gate = SoldOutGate(inner, SoldOut(TTL, clock))  # type: ignore[arg-type]
    assert await gate.find_order(5) == ("found", 5)  # everything else delegated
    inner.answer = left(1, 0)
    with pytest.raises(ShopError):
        await gate.confirm_order(place())
    assert inner.calls == 1
    before = sold_out_answers()
    for _ in range(3):
        with pytest.raises(ShopError) as e:
            await gate.confirm_order(place())
        assert e.value.code is ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH and e.value.http_status == 409
        assert e.value.data == {"goodsId": "1", "goodsNumber": 0}
    assert inner.calls == 1 and sold_out_answers() == before + 3
    inner.answer = None
    assert await gate.confirm_order(place(2)) == "order" and inner.calls == 2  # another goods: called
    # The TTL passes: one probe goes in and waits there; the others are refused meanwhile.
    clock.now += TTL
    inner.answer, inner.gate, inner.calls = None, asyncio.Event(), 0
    probe = asyncio.create_task(gate.confirm_order(place()))
    while inner.calls == 0:
        await asyncio.sleep(0)
    with pytest.raises(ShopError):
        await gate.confirm_order(place())
    assert inner.calls == 1
    inner.gate.set()
    assert await probe == "order"
    assert await gate.confirm_order(place()) == "order" and inner.calls == 2


async def test_a_cancelled_probe_does_not_leave_the_gate_stuck(clock: Clock) -> None:
    inner = FakeOrders()
    gate = SoldOutGate(inner, SoldOut(TTL, clock))  # type: ignore[arg-type]
    inner.answer = left(1, 0)
    with pytest.raises(ShopError):
        await gate.confirm_order(place())
    clock.now += TTL
    inner.answer, inner.gate = None, asyncio.Event()
    probe = asyncio.create_task(gate.confirm_order(place()))
    while inner.calls == 1:
        await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    inner.gate.set()
    assert await gate.confirm_order(place()) == "order"


def test_the_front_doors_question_takes_no_probe(memory: SoldOut, clock: Clock) -> None:
    assert not memory and memory.refusing([1]) is None
    sold_out(memory, 1)
    assert memory and memory.refusing([2, 1]) == 1 and memory.refusing([2]) is None
    clock.now += TTL
    assert memory.refusing([1]) is None  # due: the route goes on, and admit() makes it the probe
    assert memory.refusing([1]) is None
    probe = memory.admit([1])
    assert probe.probes == (1,) and memory.refusing([1]) == 1
    memory.settle(probe, None)
    assert memory.refusing([1]) is None and not memory


async def test_a_cart_is_refused_for_its_first_remembered_goods_and_a_cart_without_one_passes(clock: Clock) -> None:
    inner = FakeOrders()
    gate = SoldOutGate(inner, SoldOut(TTL, clock))  # type: ignore[arg-type]
    inner.answer = left(3, 0)  # a cart whose goods 3 turned out sold out: remembered
    with pytest.raises(ShopError):
        await gate.confirm_order(place(1, 3))
    inner.answer = None
    with pytest.raises(ShopError) as e:
        await gate.confirm_order(place(1, 2, 3))  # all or nothing: refused here, for goods 3
    assert e.value.data == {"goodsId": "3", "goodsNumber": 0} and inner.calls == 1
    # Goods 1 was on the refused cart but is not remembered: a cart of 1 and 2 goes through.
    assert await gate.confirm_order(place(1, 2)) == "order" and inner.calls == 2
