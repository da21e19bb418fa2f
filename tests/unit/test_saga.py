"""The order saga on fakes, with no database: each step failing, and each compensation.

The participants are fakes that keep stock, coupons and balances in memory and undo, for a
cancelled order, exactly what they did for it (as the ledger does); the saga's own transactions are
a fake SagaStore; settle delivers the cancel message straight to the participants."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.infra.messaging import Message
from shop.services.goods.contracts import Goods, StockLine
from shop.services.order.contracts import TAG_CANCEL, Order, OrderCancelled, OrderLine, PlaceOrder
from shop.services.order.domain import OrderStatus, PayStatus, shipping_fee
from shop.services.order.handlers import OrderHandlers
from shop.services.user.contracts import User

D = Decimal
USER, GOODS, COUPON = 1, 2, 3
PRICE = D("5000.00")
COUPON_PRICE = D("100.00")
STEPS = ("reduce_stock", "use_coupon", "pay_from_balance")


class Boom(Exception):
    """A participant that broke (not a refusal, not a dependency down): a bug, SHOP_FAIL."""


@dataclass
class FakeParticipants:
    stock: int = 10
    balance: Decimal = D("100.00")
    coupon_used: bool = False
    fail_at: str | None = None
    error: Exception = field(default_factory=lambda: Boom("down"))
    ran: list[str] = field(default_factory=list)
    taken: dict[int, dict[str, Any]] = field(default_factory=dict)  # order -> what each step took

    async def find_user(self, user_id: int) -> User:
        if user_id != USER:
            raise ShopError(ShopCode.SHOP_USER_NO_EXIST)
        return User(user_id, "u", None, 0, self.balance, datetime(2026, 1, 1))

    async def find_goods(self, goods_id: int) -> Goods:
        return Goods(goods_id, "iphone7", self.stock, PRICE, None, datetime(2026, 1, 1))

    def _step(self, name: str, order: Order) -> dict[str, Any]:
        self.ran.append(name)
        if self.fail_at == name:
            raise self.error
        return self.taken.setdefault(order.order_id, {})

    async def reduce_stock(self, order: Order) -> None:
        taken = sum(i.goods_number for i in order.items)
        step = self._step("reduce_stock", order)
        if taken > self.stock:  # the goods service's step is the check (goods.contracts.check_line)
            raise ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, data={"goodsId": str(GOODS), "goodsNumber": self.stock})
        step["stock"] = taken
        self.stock -= taken

    async def use_coupon(self, order: Order) -> Decimal | None:
        """The coupon service's step is the coupon's check: the caller's own, unused; its price."""
        taken = self._step("use_coupon", order)
        if order.coupon_id is None:
            return None
        if self.coupon_used or order.user_id != USER:
            raise ShopError(ShopCode.SHOP_COUPON_INVALID)
        taken["coupon"] = True
        self.coupon_used = True
        return COUPON_PRICE

    async def pay_from_balance(self, order: Order) -> None:
        taken = self._step("pay_from_balance", order)
        if order.money_paid > 0:
            taken["money"] = order.money_paid
            self.balance -= order.money_paid

    async def compensate(self, msg: Message) -> None:
        """Every participant's consumer of the cancel: gives back what it took for this order."""
        ev = OrderCancelled.from_message(msg)
        taken = self.taken.pop(ev.order_id, {})
        self.stock += taken.get("stock", 0)
        if taken.get("coupon"):
            self.coupon_used = False
        self.balance += taken.get("money", D("0"))


@dataclass
class FakeStore:
    """The saga's transactions on the order's own database."""

    refuse_confirm: bool = False
    confirm_breaks: str | None = None  # "landed" or "lost": the database goes away under the confirm's COMMIT
    away: int = 0  # how many more reads or writes after that find the database away
    orders: dict[int, Order] = field(default_factory=dict)
    armed: dict[int, tuple[Message, int]] = field(default_factory=dict)  # order -> (cancel, due at)
    failed: list[int] = field(default_factory=list)

    async def save_pre_order(self, order: Order, cancel: Message, due_at_ms: int) -> None:
        self.orders[order.order_id] = order
        self.armed[order.order_id] = (cancel, due_at_ms)

    async def confirm(self, order: Order, cancel: Message, *, paid: bool, at: datetime, rearm_at_ms: int) -> bool:
        if self.refuse_confirm:
            return False
        if self.confirm_breaks == "lost":
            raise ConnectionResetError("the database went away before the COMMIT")
        status = {"order_status": int(OrderStatus.CONFIRMED),
                  "pay_status": int(PayStatus.PAID if paid else PayStatus.UNPAID)}
        self.orders[order.order_id] = Order(**{**{f: getattr(order, f) for f in Order.__slots__}, **status})
        if paid:
            del self.armed[order.order_id]
        else:
            self.armed[order.order_id] = (cancel, rearm_at_ms)
        if self.confirm_breaks == "landed":
            raise ConnectionResetError("the database went away after the COMMIT, before its answer")
        return True

    def _still_away(self) -> None:
        if self.away:
            self.away -= 1
            raise ConnectionResetError("the database is restarting")

    async def confirmed(self, order_id: int) -> bool:
        self._still_away()
        return self.orders[order_id].order_status == OrderStatus.CONFIRMED

    async def fail(self, order_id: int, cancel: Message) -> None:
        self._still_away()
        self.failed.append(order_id)
        order = self.orders[order_id]
        self.orders[order_id] = Order(**{**{f: getattr(order, f) for f in Order.__slots__},
                                         "order_status": int(OrderStatus.CANCELLED)})
        self.armed[order_id] = (cancel, 0)  # due now


class Saga:
    def __init__(self, **participants: Any) -> None:
        self.participants = FakeParticipants(**participants)
        self.store = FakeStore()
        self.settled: list[tuple[str, str]] = []
        self.handlers = OrderHandlers(
            None, IdWorker(1, 1), None, participants=self.participants, store=self.store,  # type: ignore[arg-type]
            settle=self.settle, cancel_after_s=30, pay_timeout_s=1800,
        )

    async def settle(self, tag: str, key: str) -> None:
        self.settled.append((tag, key))
        cancel, _ = self.store.armed[int(key)]
        await self.participants.compensate(cancel)

    def state(self) -> tuple[int, Decimal, bool]:
        p = self.participants
        return p.stock, p.balance, p.coupon_used


def place(*, coupon: bool = True, money: str = "100.00", n: int = 1) -> PlaceOrder:
    amount = PRICE * n
    fee = shipping_fee(amount)
    return PlaceOrder(USER, [OrderLine(GOODS, n, PRICE)], fee, amount + fee, "北京", COUPON if coupon else None,
                      D(money))


async def test_every_step_runs_in_order_and_the_cancel_is_re_armed_for_the_payment_timeout():
    saga = Saga()
    order = await saga.handlers.confirm_order(place())
    assert saga.participants.ran == list(STEPS)
    assert saga.state() == (9, D("0.00"), True)
    assert order.order_status == OrderStatus.CONFIRMED and order.pay_status == PayStatus.UNPAID
    cancel, due = saga.store.armed[order.order_id]
    assert cancel.tag == TAG_CANCEL and cancel.key == str(order.order_id)
    assert due > 0 and saga.store.failed == [] and saga.settled == []


async def test_an_order_paid_by_coupon_and_balance_is_paid_at_confirmation_and_disarmed():
    saga = Saga(balance=D("5000.00"))
    order = await saga.handlers.confirm_order(place(money="4900.00"))
    assert order.pay_status == PayStatus.PAID and order.pay_time == order.confirm_time
    assert order.order_id not in saga.store.armed


@pytest.mark.parametrize(("error", "code"), [
    (Boom("down"), ShopCode.SHOP_FAIL),  # a bug: 500, logged (infra/failures.py)
    (ConnectionResetError("the database went away"), ShopCode.SHOP_SERVICE_UNAVAILABLE),  # a dependency down: 503
], ids=["bug", "dependency-down"])
@pytest.mark.parametrize("step", STEPS)
async def test_a_step_that_breaks_cancels_the_order_and_every_compensation_gives_back_what_was_taken(
    step, error, code
):
    saga = Saga(fail_at=step, error=error)
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    order_id = int(e.value.data["orderId"])
    assert e.value.code == code
    # The steps after the broken one never ran; the order failed once, and its cancel was settled.
    assert saga.participants.ran == list(STEPS[: STEPS.index(step) + 1])
    assert saga.store.failed == [order_id]
    assert saga.store.orders[order_id].order_status == OrderStatus.CANCELLED
    assert saga.settled == [(TAG_CANCEL, str(order_id))]
    cancel, due = saga.store.armed[order_id]
    assert due == 0 and OrderCancelled.from_message(cancel) == OrderCancelled(
        order_id, USER, [StockLine(GOODS, 1)], COUPON, D("100.00"))
    assert saga.state() == (10, D("100.00"), False)  # everything given back
    assert saga.participants.taken == {}


@pytest.mark.parametrize(("step", "code"), [
    ("reduce_stock", ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH),
    ("use_coupon", ShopCode.SHOP_COUPON_INVALID),
    ("pay_from_balance", ShopCode.SHOP_MONEY_PAID_INVALID),
])
async def test_a_refusal_keeps_its_code_and_the_order_is_compensated(step, code):
    saga = Saga(fail_at=step, error=ShopError(code))
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    assert e.value.code == code and "orderId" in e.value.data
    assert saga.state() == (10, D("100.00"), False)


async def test_a_confirm_that_finds_the_order_cancelled_by_its_deadline_is_refused():
    saga = Saga()
    saga.store.refuse_confirm = True
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    assert e.value.code == ShopCode.SHOP_ORDER_STATUS_INVALID
    assert saga.participants.ran == list(STEPS)
    assert saga.state() == (10, D("100.00"), False)


@pytest.mark.parametrize("away", [0, 3])
async def test_a_confirm_that_landed_unanswered_is_answered_as_placed(away):
    """The database went away after the confirm's COMMIT landed, before its answer: once it answers
    again (here after 0 or 3 more tries), the saga reads the order back and answers it placed."""
    saga = Saga()
    saga.store.confirm_breaks, saga.store.away = "landed", away
    order = await saga.handlers.confirm_order(place())
    assert order.order_status == OrderStatus.CONFIRMED and saga.store.away == 0
    assert saga.store.failed == [] and saga.settled == []
    assert saga.state() == (9, D("0.00"), True)  # everything it took, kept
    assert saga.store.armed[order.order_id][1] > 0  # its cancel re-armed for the payment timeout


@pytest.mark.parametrize("away", [0, 3])
async def test_a_confirm_that_did_not_land_fails_and_is_cancelled_once_the_database_answers(away):
    saga = Saga()
    saga.store.confirm_breaks, saga.store.away = "lost", away
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    order_id = int(e.value.data["orderId"])
    assert e.value.code == ShopCode.SHOP_SERVICE_UNAVAILABLE
    assert saga.store.failed == [order_id] and saga.store.armed[order_id][1] == 0  # the cancel due now
    assert saga.settled == [(TAG_CANCEL, str(order_id))]
    assert saga.state() == (10, D("100.00"), False)


async def test_with_the_database_away_too_long_the_order_is_left_to_its_armed_cancel(monkeypatch):
    monkeypatch.setattr("shop.services.order.handlers.AWAY_S", 0.2)
    saga = Saga()
    saga.store.confirm_breaks, saga.store.away = "landed", 1000
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    order_id = int(e.value.data["orderId"])
    assert e.value.code == ShopCode.SHOP_SERVICE_UNAVAILABLE
    assert 2 < 1000 - saga.store.away < 20  # read back, then cancel, each tried again with pauses
    assert saga.store.failed == [] and saga.settled == []
    assert saga.store.armed[order_id][1] > 0  # its cancel still armed, for the payment timeout


async def test_a_cancel_that_fails_for_a_bug_is_not_tried_again():
    saga = Saga()
    saga.store.confirm_breaks = "lost"
    calls: list[int] = []

    async def broken(order_id: int, cancel: Message) -> None:
        calls.append(order_id)
        raise Boom("a bug in the cancel")

    saga.store.fail = broken  # type: ignore[method-assign]
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    assert e.value.code == ShopCode.SHOP_SERVICE_UNAVAILABLE and len(calls) == 1


async def test_an_order_without_coupon_or_balance_skips_nothing_and_takes_only_stock():
    saga = Saga(fail_at="pay_from_balance")
    with pytest.raises(ShopError):
        await saga.handlers.confirm_order(place(coupon=False, money="0.00"))
    assert saga.participants.ran == list(STEPS)
    assert saga.state() == (10, D("100.00"), False)


async def test_an_order_the_goods_step_refuses_is_cancelled_and_takes_nothing():
    """No goods is read before the steps: the stock step refuses, and the pre-order it found ends
    cancelled, its data the goods' refusal (what the front door's gate reads) and the order."""
    saga = Saga(stock=0)
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    assert e.value.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    [order_id] = saga.store.orders
    assert e.value.data == {"goodsId": str(GOODS), "goodsNumber": 0, "orderId": str(order_id)}
    assert saga.store.orders[order_id].order_status == OrderStatus.CANCELLED
    assert saga.participants.ran == ["reduce_stock"] and saga.settled == [(TAG_CANCEL, str(order_id))]
    assert saga.state() == (0, D("100.00"), False)


async def test_an_order_refused_before_its_steps_saves_nothing_and_takes_nothing():
    saga = Saga()
    wrong_fee = replace(place(), shipping_fee=D("1.00"))
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(wrong_fee)
    assert e.value.code == ShopCode.SHOP_ORDER_SHIPPINGFEE_INVALID
    assert saga.store.orders == {} and saga.participants.ran == [] and saga.settled == []


async def test_an_order_wrong_twice_is_refused_for_its_goods_first_as_the_original_checks():
    """Its goods are read only then: a refused order pays for the reads the others save."""
    saga = Saga(stock=0)
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(replace(place(), shipping_fee=D("1.00")))
    assert e.value.code == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert e.value.data == {"goodsId": str(GOODS), "goodsNumber": 0}
    assert saga.store.orders == {} and saga.participants.ran == []


async def test_a_participants_refusal_keeps_what_it_said_beside_the_order_id():
    said = {"goodsId": str(GOODS), "goodsNumber": 0}
    saga = Saga(fail_at="reduce_stock", error=ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, data=dict(said)))
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    order_id = next(iter(saga.store.orders))
    assert e.value.data == {**said, "orderId": str(order_id)}


async def test_the_coupon_steps_price_completes_the_pricing_that_the_confirm_writes():
    saga = Saga()
    order = await saga.handlers.confirm_order(place(money="100.00"))
    amount = PRICE + shipping_fee(PRICE)
    assert (order.coupon_paid, order.pay_amount) == (COUPON_PRICE, amount - COUPON_PRICE - D("100.00"))
    stored = saga.store.orders[order.order_id]
    assert (stored.coupon_paid, stored.pay_amount) == (order.coupon_paid, order.pay_amount)


async def test_a_used_coupon_is_refused_by_its_step_and_everything_taken_comes_back():
    saga = Saga(coupon_used=True)
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place())
    assert e.value.code == ShopCode.SHOP_COUPON_INVALID
    assert saga.participants.ran == ["reduce_stock", "use_coupon"]  # the balance untouched
    assert saga.store.orders[int(e.value.data["orderId"])].order_status == OrderStatus.CANCELLED
    assert saga.state() == (10, D("100.00"), True)  # the stock back; the coupon still the other order's


async def test_coupon_and_balance_above_the_amount_are_refused_once_the_coupons_price_is_known():
    saga = Saga(balance=D("6000.00"))
    amount = PRICE + shipping_fee(PRICE)
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(place(money=str(amount - COUPON_PRICE + D("0.01"))))
    assert e.value.code == ShopCode.SHOP_PAY_AMOUNT_INVALID and "orderId" in e.value.data
    assert saga.participants.ran == ["reduce_stock", "use_coupon"]
    assert saga.state() == (10, D("6000.00"), False)  # stock and coupon given back


async def test_a_coupon_refusal_for_a_user_that_does_not_exist_says_so_as_the_original_would():
    saga = Saga()
    bad = replace(place(), user_id=USER + 1)  # its coupon is not this user's either
    with pytest.raises(ShopError) as e:
        await saga.handlers.confirm_order(bad)
    assert e.value.code == ShopCode.SHOP_USER_NO_EXIST and "orderId" in e.value.data
    assert saga.state() == (10, D("100.00"), False)
