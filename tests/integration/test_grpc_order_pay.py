"""The order and pay services over a real grpc.aio server on 127.0.0.1, with the handlers of a real
embedded shop: an order placed over the wire is the original scenario, values round-trip exactly,
ShopErrors cross as the same codes (with their data: a failed order's id), and refusals change nothing.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from shop.bootstrap import bootstrap
from shop.common.codes import ShopCode
from shop.common.errors import ServiceUnavailable, ShopError
from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.errors import MD_CODE, MD_DATA
from shop.infra.rpc.server import serve
from shop.infra.tls import Tls, server_name
from shop.rpc.v1 import orders_pb2 as opb
from shop.rpc.v1 import orders_pb2_grpc as opb_grpc
from shop.runtime import Shop
from shop.services.order import rpc as order_rpc
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.pay import rpc as pay_rpc
from shop.services.pay.contracts import Notification
from tests.conftest import TlsFor, make_settings
from tests.support import D, place, state, world

# Placing an order waits on the participants, and a failed one on its compensation (up to ~2 s).
DEADLINE_S = 8.0


@dataclass
class Net:
    shop: Shop
    server: grpc.aio.Server
    target: str
    orders: GrpcClient
    pay: GrpcClient
    tls: Tls  # the front door's, as the clients have it


@pytest.fixture
async def net(tmp_path: Path, tls: TlsFor) -> AsyncIterator[Net]:
    shop = bootstrap(make_settings(tmp_path))
    await shop.start()
    try:
        server = await serve([(order_rpc.SERVICE, shop.orders), (pay_rpc.SERVICE, shop.pay)], "127.0.0.1", 0,
                             tls=tls("test-server"))
        target = f"127.0.0.1:{server.port}"
        n = Net(shop, server, target, GrpcClient(order_rpc.SERVICE, target, DEADLINE_S, tls=tls("web")),
                GrpcClient(pay_rpc.SERVICE, target, DEADLINE_S, tls=tls("web")), tls("web"))
        try:
            yield n
        finally:
            await n.orders.close()
            await n.pay.close()
            await server.stop(None)
    finally:
        await shop.stop()


async def expect_code(code: ShopCode, call: object, http_status: int | None = None) -> ShopError:
    with pytest.raises(ShopError) as info:
        await call  # type: ignore[misc]
    assert info.value.code is code, info.value
    assert info.value.http_status == (http_status or code.http_status)
    return info.value


async def test_the_original_scenario_over_the_wire(net: Net) -> None:
    w = await world(net.shop, money="100.00", stock=10, price="5000.00", coupon="100.00")
    order = await net.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00", consignee="张三")
    )
    assert order.order_status == OrderStatus.CONFIRMED and order.pay_status == PayStatus.UNPAID
    assert order.pay_amount == D("4800.00") and str(order.pay_amount) == "4800.00"
    assert order.shipping_fee == D("0.00") and order.order_amount == D("5000.00")
    # Snowflake ids pass 2^53: a double on the way would have rounded them.
    assert min(order.order_id, order.user_id, order.goods_id, order.coupon_id or 0) > 2**53
    assert (order.user_id, order.goods_id, order.coupon_id) == (w.user_id, w.goods_id, w.coupon_id)
    assert order.consignee == "张三" and order.address == "北京"
    assert order.confirm_time is not None and order.pay_time is None
    assert await state(net.shop, w) == (9, D("0.00"), 1)

    found = await net.orders.find_order(order.order_id)
    assert found == await net.shop.orders.find_order(order.order_id)
    assert found.pay_amount == D("4800.00") and found.coupon_paid == D("100.00") and found.money_paid == D("100.00")
    await expect_code(ShopCode.SHOP_ORDER_NO_EXIST, net.orders.find_order(12345))


async def test_a_rejection_crosses_with_its_code_and_changes_nothing(net: Net) -> None:
    w = await world(net.shop, money="100.00", stock=10, price="5000.00", coupon="100.00")
    cmd = place(w.user_id, w.goods_id, D("4999.00"), coupon_id=w.coupon_id, money_paid="100.00")
    await expect_code(ShopCode.SHOP_GOODS_PRICE_INVALID, net.orders.confirm_order(cmd))
    assert await state(net.shop, w) == (10, D("100.00"), 0)
    # The goods' step refused it (no goods is read before): the pre-order ends cancelled.
    assert [o.order_status for o in (await net.shop.orders.audit_facts()).orders.values()] == [2]


async def test_an_injected_failure_crosses_as_unavailable_with_the_order_id(net: Net) -> None:
    w = await world(net.shop, money="100.00", stock=10, price="5000.00", coupon="100.00")
    net.shop.faults.arm("order.before_confirm", "error", times=1)
    cmd = place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    with pytest.raises(ServiceUnavailable) as info:
        await net.orders.confirm_order(cmd)
    err = info.value
    assert err.code is ShopCode.SHOP_SERVICE_UNAVAILABLE and err.http_status == 503
    assert "injected fault at order.before_confirm" in err.message
    assert isinstance(err.data, dict) and set(err.data) == {"orderId"}
    order_id = int(err.data["orderId"])
    assert order_id > 2**53
    # The order the data names is the one the shop cancelled, its effects undone.
    failed = await net.orders.find_order(order_id)
    assert failed.order_status == OrderStatus.CANCELLED
    assert await state(net.shop, w) == (10, D("100.00"), 0)


async def test_the_shop_data_on_the_wire(net: Net) -> None:
    """What a client in another language sees: the status, the code and the data as compact JSON."""
    w = await world(net.shop, money="100.00", coupon=None)
    net.shop.faults.arm("order.before_confirm", "error", times=1)
    c = place(w.user_id, w.goods_id, w.price)
    async with net.tls.channel(net.target, server_name("order")) as channel:
        stub = opb_grpc.OrderServiceStub(channel)
        req = opb.ConfirmOrderRequest(
            user_id=c.user_id, items=[opb.OrderLine(goods_id=w.goods_id, goods_number=1, goods_price=str(w.price))],
            shipping_fee=str(c.shipping_fee), order_amount=str(c.order_amount), address="x", money_paid="0.00",
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ConfirmOrder(req, timeout=DEADLINE_S)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    md = dict(info.value.trailing_metadata())
    assert md[MD_CODE] == "SHOP_SERVICE_UNAVAILABLE"
    assert md[MD_DATA].startswith('{"orderId":"') and md[MD_DATA].endswith('"}')


async def test_cancel_by_the_owner_and_not_by_another(net: Net) -> None:
    w = await world(net.shop, money="100.00", stock=10, price="5000.00", coupon="100.00")
    other = await world(net.shop, coupon=None)
    order = await net.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    )
    await expect_code(ShopCode.SHOP_USER_NOT_AUTHORIZED, net.orders.cancel_order(order.order_id, other.user_id), 403)
    await expect_code(ShopCode.SHOP_USER_NOT_AUTHORIZED, net.orders.refund_order(order.order_id, other.user_id), 403)
    assert (await net.orders.find_order(order.order_id)).order_status == OrderStatus.CONFIRMED

    cancelled = await net.orders.cancel_order(order.order_id, w.user_id)
    assert cancelled.order_id == order.order_id and cancelled.order_status == OrderStatus.CANCELLED
    assert await state(net.shop, w) == (10, D("100.00"), 0)
    # Not retried, and a repeat is refused by the order's state.
    await expect_code(ShopCode.SHOP_ORDER_STATUS_INVALID, net.orders.cancel_order(order.order_id, w.user_id))
    # An unpaid order cannot be refunded.
    await expect_code(ShopCode.SHOP_ORDER_STATUS_INVALID, net.orders.refund_order(order.order_id, w.user_id))


async def test_payments_over_the_wire(net: Net) -> None:
    w = await world(net.shop, money="100.00", stock=10, price="5000.00", coupon="100.00")
    order = await net.orders.confirm_order(
        place(w.user_id, w.goods_id, w.price, coupon_id=w.coupon_id, money_paid="100.00")
    )
    first = await net.pay.create_payment(order.order_id, w.user_id, Decimal("4800.00"))
    second = await net.pay.create_payment(order.order_id, w.user_id, Decimal("4800.00"))
    assert first.pay_id == second.pay_id and first.pay_id > 2**53
    assert first.order_id == order.order_id and first.user_id == w.user_id
    assert str(first.pay_amount) == "4800.00" and first.trade_no is None and first.paid_time is None

    found = await net.pay.find_payment(first.pay_id)
    assert found == await net.shop.pay.find_payment(first.pay_id)
    await expect_code(ShopCode.SHOP_PAYMENT_NOT_FOUND, net.pay.find_payment(12345))
    await expect_code(
        ShopCode.SHOP_PAYMENT_AMOUNT_INVALID, net.pay.create_payment(order.order_id, w.user_id, Decimal("4799.99"))
    )
    other = await world(net.shop, coupon=None)
    await expect_code(
        ShopCode.SHOP_USER_NOT_AUTHORIZED, net.pay.create_payment(order.order_id, other.user_id, D("4800.00")), 403
    )

    body = f'{{"payId":"{first.pay_id}","isPaid":2,"payAmount":"4800.00","tradeNo":"T1"}}'.encode()
    forged = Notification(timestamp="1764166799", nonce="n0nce", signature="garbage", body=body)
    await expect_code(ShopCode.SHOP_PAYMENT_SIGNATURE_INVALID, net.pay.notify(forged))
    await expect_code(
        ShopCode.SHOP_PAYMENT_SIGNATURE_INVALID, net.pay.notify(Notification(None, None, None, body))
    )
    # Nothing was marked paid by the forgery.
    assert (await net.pay.find_payment(first.pay_id)).is_paid == found.is_paid
    assert (await net.orders.find_order(order.order_id)).pay_status == PayStatus.UNPAID


class Flaky:
    """Counts calls and answers every one with ServiceUnavailable (status UNAVAILABLE)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def _hit(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        raise ServiceUnavailable("the database is away").with_data({"orderId": "42"})

    async def confirm_order(self, cmd: object) -> None:
        self._hit("confirm_order")

    async def find_order(self, order_id: int) -> None:
        self._hit("find_order")

    async def cancel_order(self, order_id: int, user_id: int) -> None:
        self._hit("cancel_order")

    async def refund_order(self, order_id: int, user_id: int) -> None:
        self._hit("refund_order")

    async def create_payment(self, order_id: int, user_id: int, pay_amount: Decimal) -> None:
        self._hit("create_payment")

    async def find_payment(self, pay_id: int) -> None:
        self._hit("find_payment")

    async def notify(self, n: Notification) -> None:
        self._hit("notify")


async def test_only_idempotent_calls_are_retried_once(tls: TlsFor) -> None:
    flaky = Flaky()
    server = await serve([(order_rpc.SERVICE, flaky), (pay_rpc.SERVICE, flaky)], "127.0.0.1", 0,
                         tls=tls("test-server"))
    target = f"127.0.0.1:{server.port}"
    try:
        async with (GrpcClient(order_rpc.SERVICE, target, 3.0, tls=tls("web")) as orders,
                    GrpcClient(pay_rpc.SERVICE, target, 3.0, tls=tls("web")) as pay):
            calls = [
                orders.confirm_order(place(1, 2, D("10.00"))), orders.find_order(1), orders.cancel_order(1, 2),
                orders.refund_order(1, 2), pay.create_payment(1, 2, D("1.00")), pay.find_payment(1),
                pay.notify(Notification("1", "n", "s", b"{}")),
            ]
            for call in calls:
                with pytest.raises(ServiceUnavailable, match="the database is away") as info:
                    await call
                assert info.value.data == {"orderId": "42"}
    finally:
        await server.stop(None)
    assert flaky.calls == {
        "confirm_order": 1, "find_order": 2, "cancel_order": 1, "refund_order": 1,
        "create_payment": 1, "find_payment": 2, "notify": 2,
    }
