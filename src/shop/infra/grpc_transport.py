"""RPC over the network with grpc.aio, for the participant services (user, goods, coupon) and the
order and pay services.

The same rules as `LocalClient` (infra/rpc.py), over a wire:

- The schemas are proto/shop/v1/participants.proto and orders.proto; the handlers stay as they are and this module
  converts protobuf <-> the contracts' dataclasses on both sides. Money crosses as a decimal string
  and ids as int64, so "4800.00" and a snowflake id past 2^53 arrive exactly as they left.
- ShopErrors cross as codes: the server turns one into a gRPC status (NOT_FOUND, FAILED_PRECONDITION,
  ...) with the ShopCode's name, message and HTTP status in the trailing metadata, and the client
  raises the same ShopError again, with its data (JSON in "shop-data": a failed order's
  {"orderId": ...}, which the HTTP layer hands back). Anything else - a deadline, a refused connection, a handler that
  broke - becomes ServiceUnavailable: the step may or may not have happened on the other side.
- Every call has a deadline (`deadline_s`), sent to the server as the gRPC timeout.
- Only calls that are safe to repeat are retried, once, on UNAVAILABLE: the reads, login, and the
  three steps of an order (reduce_stock, use_coupon, change_money), whose ledger rows are keyed by
  the order so a repeat finds the first one's row, and pay's notify, a compare-and-set on the
  payment. create_* and confirm_order make a new id each time, and cancel/refund_order change an
  order's state (a repeat after a lost reply would be refused): never retried, unless the channel
  could not connect at all (the request never left; a provider that crashed and is still registered).
  A retry spends what is left of the same deadline, so a caller never waits longer than it asked.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any, Protocol, Self
from urllib.parse import quote, unquote

import grpc
import orjson

from shop.common.codes import ShopCode
from shop.common.errors import ServiceUnavailable, ShopError, from_wire, invalid
from shop.rpc.v1 import orders_pb2 as opb
from shop.rpc.v1 import orders_pb2_grpc as opb_grpc
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.coupon.contracts import Coupon, CreateCoupon, UseCoupon
from shop.services.goods.contracts import CreateGoods, Goods, ReduceStock
from shop.services.order.contracts import Order, PlaceOrder
from shop.services.pay.contracts import Notification, Payment
from shop.services.user.contracts import ChangeMoney, CreateUser, MoneyLogType, User

log = logging.getLogger("shop.rpc.grpc")

MD_CODE = "shop-code"
MD_MESSAGE = "shop-message"
MD_HTTP_STATUS = "shop-http-status"
MD_DATA = "shop-data"

# A retry is only worth making if this much of the deadline is left.
_MIN_RETRY_BUDGET_S = 0.05
_NOT_CONNECTED = "failed to connect to all addresses"


# ---- values on the wire ----

def money_out(value: Decimal) -> str:
    # Fixed-point, never exponent form ("4800.00", not "4.8E+3"): other languages parse it too.
    return format(value, "f")


def money_in(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise invalid(f"not an amount of money: {text!r}") from None
    if not value.is_finite():
        raise invalid(f"not an amount of money: {text!r}")
    return value


def time_out(value: datetime) -> str:
    # Naive datetimes are UTC throughout the shop (common/clock.py); the Z says so on the wire.
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def time_in(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"not a time: {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def user_out(u: User) -> pb.User:
    return pb.User(
        user_id=u.user_id, user_name=u.user_name, user_mobile=u.user_mobile, user_score=u.user_score,
        user_money=money_out(u.user_money), user_reg_time=time_out(u.user_reg_time),
    )


def user_in(m: pb.User) -> User:
    return User(
        user_id=m.user_id, user_name=m.user_name, user_mobile=_opt(m, "user_mobile"), user_score=m.user_score,
        user_money=money_in(m.user_money), user_reg_time=time_in(m.user_reg_time),
    )


def goods_out(g: Goods) -> pb.Goods:
    return pb.Goods(
        goods_id=g.goods_id, goods_name=g.goods_name, goods_number=g.goods_number,
        goods_price=money_out(g.goods_price), goods_desc=g.goods_desc, add_time=time_out(g.add_time),
    )


def goods_in(m: pb.Goods) -> Goods:
    return Goods(
        goods_id=m.goods_id, goods_name=m.goods_name, goods_number=m.goods_number,
        goods_price=money_in(m.goods_price), goods_desc=_opt(m, "goods_desc"), add_time=time_in(m.add_time),
    )


def coupon_out(c: Coupon) -> pb.Coupon:
    return pb.Coupon(
        coupon_id=c.coupon_id, coupon_price=money_out(c.coupon_price), user_id=c.user_id, order_id=c.order_id,
        is_used=c.is_used, used_time=time_out(c.used_time) if c.used_time is not None else None,
    )


def coupon_in(m: pb.Coupon) -> Coupon:
    used_time = _opt(m, "used_time")
    return Coupon(
        coupon_id=m.coupon_id, coupon_price=money_in(m.coupon_price), user_id=m.user_id,
        order_id=_opt(m, "order_id"), is_used=m.is_used, used_time=time_in(used_time) if used_time else None,
    )


def _time_out_opt(value: datetime | None) -> str | None:
    return time_out(value) if value is not None else None


def _time_in_opt(m: Any, name: str) -> datetime | None:
    text = _opt(m, name)
    return time_in(text) if text else None


def order_out(o: Order) -> opb.Order:
    return opb.Order(
        order_id=o.order_id, user_id=o.user_id, order_status=o.order_status, pay_status=o.pay_status,
        shipping_status=o.shipping_status, address=o.address, consignee=o.consignee, goods_id=o.goods_id,
        goods_number=o.goods_number, goods_price=money_out(o.goods_price), goods_amount=money_out(o.goods_amount),
        shipping_fee=money_out(o.shipping_fee), order_amount=money_out(o.order_amount), coupon_id=o.coupon_id,
        coupon_paid=money_out(o.coupon_paid), money_paid=money_out(o.money_paid), pay_amount=money_out(o.pay_amount),
        add_time=time_out(o.add_time), confirm_time=_time_out_opt(o.confirm_time), pay_time=_time_out_opt(o.pay_time),
    )


def order_in(m: opb.Order) -> Order:
    return Order(
        order_id=m.order_id, user_id=m.user_id, order_status=m.order_status, pay_status=m.pay_status,
        shipping_status=m.shipping_status, address=m.address, consignee=_opt(m, "consignee"), goods_id=m.goods_id,
        goods_number=m.goods_number, goods_price=money_in(m.goods_price), goods_amount=money_in(m.goods_amount),
        shipping_fee=money_in(m.shipping_fee), order_amount=money_in(m.order_amount), coupon_id=_opt(m, "coupon_id"),
        coupon_paid=money_in(m.coupon_paid), money_paid=money_in(m.money_paid), pay_amount=money_in(m.pay_amount),
        add_time=time_in(m.add_time), confirm_time=_time_in_opt(m, "confirm_time"), pay_time=_time_in_opt(m, "pay_time"),
    )


def payment_out(p: Payment) -> opb.Payment:
    return opb.Payment(
        pay_id=p.pay_id, order_id=p.order_id, user_id=p.user_id, pay_amount=money_out(p.pay_amount),
        is_paid=p.is_paid, trade_no=p.trade_no, paid_time=_time_out_opt(p.paid_time), is_refunded=p.is_refunded,
    )


def payment_in(m: opb.Payment) -> Payment:
    return Payment(
        pay_id=m.pay_id, order_id=m.order_id, user_id=m.user_id, pay_amount=money_in(m.pay_amount),
        is_paid=m.is_paid, trade_no=_opt(m, "trade_no"), paid_time=_time_in_opt(m, "paid_time"),
        is_refunded=m.is_refunded,
    )


def _log_type_in(value: int) -> MoneyLogType:
    try:
        return MoneyLogType(value)
    except ValueError:
        raise invalid(f"unknown money log type {value}") from None


# ---- the methods: how each one is served, and whether a caller may repeat it ----

@dataclass(frozen=True, slots=True)
class Method:
    rpc: str  # the gRPC method's name, "FindUser"
    name: str  # the contract's method, "find_user"
    serve: Callable[[Any, Any], Awaitable[Any]]  # (handler object, request message) -> reply message
    retry: bool  # safe to repeat: a read, or keyed by the order on the other side


@dataclass(frozen=True, slots=True)
class Service:
    name: str  # "user": the key in serve()'s impls, and in logs
    full_name: str  # "shop.v1.UserService"
    methods: dict[str, Method]  # by contract name
    stub: Callable[[grpc.aio.Channel], Any]
    add_to_server: Callable[[Any, grpc.aio.Server], None]


async def _find_user(h: Any, r: pb.FindUserRequest) -> pb.User:
    return user_out(await h.find_user(r.user_id))


async def _create_user(h: Any, r: pb.CreateUserRequest) -> pb.CreateUserReply:
    cmd = CreateUser(
        user_name=r.user_name, user_password=r.user_password, user_money=money_in(r.user_money),
        user_mobile=_opt(r, "user_mobile"),
    )
    return pb.CreateUserReply(user_id=await h.create_user(cmd))


async def _login(h: Any, r: pb.LoginRequest) -> pb.User:
    return user_out(await h.login(r.user_name, r.password))


async def _change_money(h: Any, r: pb.ChangeMoneyRequest) -> pb.ChangeMoneyReply:
    cmd = ChangeMoney(user_id=r.user_id, order_id=r.order_id, money=money_in(r.money), log_type=_log_type_in(r.log_type))
    await h.change_money(cmd)
    return pb.ChangeMoneyReply()


async def _find_goods(h: Any, r: pb.FindGoodsRequest) -> pb.Goods:
    return goods_out(await h.find_goods(r.goods_id))


async def _create_goods(h: Any, r: pb.CreateGoodsRequest) -> pb.CreateGoodsReply:
    cmd = CreateGoods(
        goods_name=r.goods_name, goods_number=r.goods_number, goods_price=money_in(r.goods_price),
        goods_desc=_opt(r, "goods_desc"),
    )
    return pb.CreateGoodsReply(goods_id=await h.create_goods(cmd))


async def _reduce_stock(h: Any, r: pb.ReduceStockRequest) -> pb.ReduceStockReply:
    await h.reduce_stock(ReduceStock(order_id=r.order_id, goods_id=r.goods_id, goods_number=r.goods_number))
    return pb.ReduceStockReply()


async def _find_coupon(h: Any, r: pb.FindCouponRequest) -> pb.Coupon:
    return coupon_out(await h.find_coupon(r.coupon_id))


async def _create_coupon(h: Any, r: pb.CreateCouponRequest) -> pb.CreateCouponReply:
    cmd = CreateCoupon(user_id=r.user_id, coupon_price=money_in(r.coupon_price))
    return pb.CreateCouponReply(coupon_id=await h.create_coupon(cmd))


async def _use_coupon(h: Any, r: pb.UseCouponRequest) -> pb.UseCouponReply:
    await h.use_coupon(UseCoupon(coupon_id=r.coupon_id, user_id=r.user_id, order_id=r.order_id))
    return pb.UseCouponReply()


async def _confirm_order(h: Any, r: opb.ConfirmOrderRequest) -> opb.Order:
    cmd = PlaceOrder(
        user_id=r.user_id, goods_id=r.goods_id, goods_number=r.goods_number, goods_price=money_in(r.goods_price),
        shipping_fee=money_in(r.shipping_fee), order_amount=money_in(r.order_amount), address=r.address,
        coupon_id=_opt(r, "coupon_id"), money_paid=money_in(r.money_paid or "0.00"), consignee=_opt(r, "consignee"),
    )
    return order_out(await h.confirm_order(cmd))


async def _find_order(h: Any, r: opb.FindOrderRequest) -> opb.Order:
    return order_out(await h.find_order(r.order_id))


async def _cancel_order(h: Any, r: opb.CancelOrderRequest) -> opb.Order:
    return order_out(await h.cancel_order(r.order_id, r.user_id))


async def _refund_order(h: Any, r: opb.RefundOrderRequest) -> opb.Order:
    return order_out(await h.refund_order(r.order_id, r.user_id))


async def _create_payment(h: Any, r: opb.CreatePaymentRequest) -> opb.Payment:
    return payment_out(await h.create_payment(r.order_id, r.user_id, money_in(r.pay_amount)))


async def _find_payment(h: Any, r: opb.FindPaymentRequest) -> opb.Payment:
    return payment_out(await h.find_payment(r.pay_id))


async def _notify(h: Any, r: opb.NotifyRequest) -> opb.NotifyReply:
    n = Notification(timestamp=_opt(r, "timestamp"), nonce=_opt(r, "nonce"), signature=_opt(r, "signature"), body=r.body)
    await h.notify(n)
    return opb.NotifyReply()


def _methods(*methods: Method) -> dict[str, Method]:
    return {m.name: m for m in methods}


SERVICES: dict[str, Service] = {
    "user": Service(
        "user", "shop.v1.UserService",
        _methods(
            Method("FindUser", "find_user", _find_user, retry=True),
            Method("ChangeMoney", "change_money", _change_money, retry=True),
            Method("CreateUser", "create_user", _create_user, retry=False),
            Method("Login", "login", _login, retry=True),
        ),
        pb_grpc.UserServiceStub, pb_grpc.add_UserServiceServicer_to_server,
    ),
    "goods": Service(
        "goods", "shop.v1.GoodsService",
        _methods(
            Method("FindGoods", "find_goods", _find_goods, retry=True),
            Method("ReduceStock", "reduce_stock", _reduce_stock, retry=True),
            Method("CreateGoods", "create_goods", _create_goods, retry=False),
        ),
        pb_grpc.GoodsServiceStub, pb_grpc.add_GoodsServiceServicer_to_server,
    ),
    "coupon": Service(
        "coupon", "shop.v1.CouponService",
        _methods(
            Method("FindCoupon", "find_coupon", _find_coupon, retry=True),
            Method("UseCoupon", "use_coupon", _use_coupon, retry=True),
            Method("CreateCoupon", "create_coupon", _create_coupon, retry=False),
        ),
        pb_grpc.CouponServiceStub, pb_grpc.add_CouponServiceServicer_to_server,
    ),
    "order": Service(
        "order", "shop.v1.OrderService",
        _methods(
            Method("ConfirmOrder", "confirm_order", _confirm_order, retry=False),
            Method("FindOrder", "find_order", _find_order, retry=True),
            Method("CancelOrder", "cancel_order", _cancel_order, retry=False),
            Method("RefundOrder", "refund_order", _refund_order, retry=False),
        ),
        opb_grpc.OrderServiceStub, opb_grpc.add_OrderServiceServicer_to_server,
    ),
    "pay": Service(
        "pay", "shop.v1.PayService",
        _methods(
            Method("CreatePayment", "create_payment", _create_payment, retry=False),
            Method("FindPayment", "find_payment", _find_payment, retry=True),
            Method("Notify", "notify", _notify, retry=True),
        ),
        opb_grpc.PayServiceStub, opb_grpc.add_PayServiceServicer_to_server,
    ),
}


# ---- errors on the wire ----

# The status a ShopError travels under. The code itself rides in the metadata; the status is for
# what sits in between (proxies, dashboards, other languages' clients) and for retry decisions:
# nothing here is UNAVAILABLE unless the service really is, so a refusal is never retried.
_STATUS_BY_CODE: dict[ShopCode, grpc.StatusCode] = {
    ShopCode.SHOP_USER_NAME_TAKEN: grpc.StatusCode.ALREADY_EXISTS,
    ShopCode.SHOP_SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ShopCode.SHOP_FAIL: grpc.StatusCode.INTERNAL,
}
_STATUS_BY_HTTP: dict[int, grpc.StatusCode] = {
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,  # stock, balance, coupon, order state: the state refuses
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}

# Metadata values must be printable ASCII: '%' and anything else is percent-encoded.
_MD_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def status_for(code: ShopCode) -> grpc.StatusCode:
    return _STATUS_BY_CODE.get(code) or _STATUS_BY_HTTP.get(code.http_status, grpc.StatusCode.UNKNOWN)


def _data_out(data: Any) -> str | None:
    """The error's data as compact JSON, percent-encoded like the message; None if it has none
    or it is not JSON (then it stays behind: the code and message still cross)."""
    if data is None:
        return None
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        log.warning("ShopError data %r is not JSON; not sent", data)
        return None
    return quote(text, safe=_MD_SAFE)


def _data_in(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(unquote(text))
    except ValueError:
        return None


def error_metadata(exc: ShopError) -> tuple[tuple[str, str], ...]:
    md: tuple[tuple[str, str], ...] = (
        (MD_CODE, exc.code.name),
        (MD_MESSAGE, quote(exc.message, safe=_MD_SAFE)),
        (MD_HTTP_STATUS, str(exc.http_status)),
    )
    data = _data_out(exc.data)
    return md if data is None else (*md, (MD_DATA, data))


def error_from_rpc(exc: grpc.aio.AioRpcError, where: str) -> ShopError:
    """The ShopError a failed call stands for: the server's own, or ServiceUnavailable."""
    md = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    name = md.get(MD_CODE)
    if name is None:
        # No code: the call never reached a handler, or the handler broke. Either way the caller
        # cannot know whether the step happened.
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServiceUnavailable(f"{where} timed out")
        return ServiceUnavailable(f"{where} failed: {exc.code().name} {exc.details() or ''}".rstrip())
    try:
        http_status = int(md[MD_HTTP_STATUS])
    except (KeyError, ValueError):
        http_status = None
    return from_wire(name, unquote(md.get(MD_MESSAGE, "")), http_status=http_status, data=_data_in(md.get(MD_DATA)))


# ---- server ----

def _servicer(service: Service, impl: object) -> SimpleNamespace:
    """The object the generated add_*_to_server expects: one coroutine per RPC, by its gRPC name."""
    rpcs: dict[str, Any] = {}
    for m in service.methods.values():
        rpcs[m.rpc] = _rpc(service, m, impl)
    return SimpleNamespace(**rpcs)


def _rpc(service: Service, m: Method, impl: object) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    where = f"{service.name}.{m.name}"

    async def rpc(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await m.serve(impl, request)
        except ShopError as exc:
            await context.abort(status_for(exc.code), exc.message, trailing_metadata=error_metadata(exc))
        except asyncio.CancelledError:
            raise  # the caller's deadline passed or it went away: nobody is waiting for a reply
        except Exception as exc:  # the boundary: only codes cross it
            log.exception("%s failed", where)
            # No shop-code: the client makes it ServiceUnavailable, as LocalClient does.
            await context.abort(grpc.StatusCode.INTERNAL, f"{where} failed: {exc.__class__.__name__}")

    rpc.__name__ = m.rpc
    return rpc


async def serve(
    impls: dict[str, object], host: str = "127.0.0.1", port: int = 0, *, faults: Any = None,
) -> grpc.aio.Server:
    """Start a server exposing each handler object ("user", "goods", "coupon", "order", "pay") over its service,
    and, given `faults`, the operator's AdminService (ping, fault injection) of this process.

    port 0 picks a free port; the one bound is `server.port`. Stop it with `await server.stop(grace)`.
    """
    unknown = set(impls) - set(SERVICES)
    if unknown:
        raise ValueError(f"no gRPC schema for {sorted(unknown)}; known: {sorted(SERVICES)}")
    server = grpc.aio.server()
    for name, impl in impls.items():
        service = SERVICES[name]
        service.add_to_server(_servicer(service, impl), server)
    if faults is not None:
        server.add_generic_rpc_handlers((_admin_handler(faults),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:  # older grpcio reports a failed bind as port 0 rather than raising
        raise OSError(f"cannot listen on {host}:{port}")
    server.port = bound  # type: ignore[attr-defined]
    await server.start()
    log.info("gRPC serving %s on %s:%d", sorted(impls), host, bound)
    return server


# ---- the operator's service: every process of the distributed shop serves it ----
#
# Fault injection is per process (faults live in memory where their points are), so the front door
# arms a fault in every process through this service. It carries small JSON documents: a schema
# would add nothing, and it keeps the service out of the public protobuf contract.

ADMIN_SERVICE = "shop.v1.AdminService"


def _admin_handler(faults: Any) -> grpc.GenericRpcHandler:
    async def ping(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        return {"pid": os.getpid()}

    async def arm_fault(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        try:
            faults.arm(request["point"], request["action"], request.get("times"), int(request.get("delayMs", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad fault: {exc}")
        return {}

    async def clear_faults(request: dict[str, Any], context: grpc.aio.ServicerContext) -> dict[str, Any]:
        faults.clear()
        return {}

    def unary(fn: Callable[..., Awaitable[dict[str, Any]]]) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=orjson.loads,
                                                   response_serializer=orjson.dumps)

    return grpc.method_handlers_generic_handler(ADMIN_SERVICE, {
        "Ping": unary(ping), "ArmFault": unary(arm_fault), "ClearFaults": unary(clear_faults),
    })


async def admin_call(address: str, method: str, body: dict[str, Any], timeout_s: float = 2.0) -> dict[str, Any]:
    """One call of a process's AdminService (rare: a channel for the call)."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{ADMIN_SERVICE}/{method}", request_serializer=orjson.dumps,
                                   response_deserializer=orjson.loads)
        return await call(body, timeout=timeout_s)


# ---- clients ----

class Target(Protocol):
    """Where a client's calls go: one fixed address, or a registry's live list of providers."""

    async def pick(self) -> str: ...

    def mark_failed(self, address: str) -> None: ...

    def live(self) -> Collection[str] | None:
        """The addresses that may still be picked, or None when that is not known."""
        ...


class Fixed:
    def __init__(self, address: str) -> None:
        self.address = address

    async def pick(self) -> str:
        return self.address

    def mark_failed(self, address: str) -> None:
        pass

    def live(self) -> Collection[str] | None:
        return None


class GrpcClient:
    """A client of one service. `target` is "host:port", or a Target that picks a provider per call
    (registry.Discovered: round-robin over the live providers in Zookeeper). A channel per address
    is opened on first use, on the running loop (a grpc.aio channel belongs to the loop it was made
    on); `close()` ends them.

    A call that fails without reaching a handler (connection refused or reset: the provider is
    gone) marks that provider failed, so the next calls go to the others until the registry drops
    it; a retry-safe call is retried once at once, on the next provider.

    A provider restarted on a new port is a new address. When a call first needs a channel to an
    address, the channels to addresses the target no longer lists are closed (after their calls in
    flight, within one deadline), so a long-lived client keeps only the channels it can use."""

    service: Service

    def __init__(self, target: str | Target, deadline_s: float = 5.0, *, channel: grpc.aio.Channel | None = None) -> None:
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive: every call has a deadline")
        self.target: Target = Fixed(target) if isinstance(target, str) else target
        self.deadline_s = deadline_s
        self._stubs: dict[str, Any] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()  # channels being closed after their calls
        if channel is not None:
            assert isinstance(target, str), "a channel goes with a fixed address"
            self._channels[target] = channel
            self._stubs[target] = self.service.stub(channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        channels, self._channels, self._stubs = self._channels, {}, {}
        for ch in channels.values():
            await ch.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _stub(self, address: str) -> Any:
        stub = self._stubs.get(address)
        if stub is None:
            self._prune()
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
            stub = self._stubs[address] = self.service.stub(channel)
        return stub

    def _prune(self) -> None:
        """Close the channels to addresses the target no longer lists. Done only when a new
        channel opens: that is when providers have changed, and it keeps the hot path a lookup."""
        live = self.target.live()
        if live is None:
            return
        for address in [a for a in self._channels if a not in live]:
            channel = self._channels.pop(address)
            self._stubs.pop(address, None)
            # A provider that stops cleanly leaves the registry first and then finishes its calls:
            # ours to it may still be in flight, so they get up to one deadline to end.
            task = asyncio.get_running_loop().create_task(channel.close(grace=self.deadline_s))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @property
    def open_addresses(self) -> list[str]:
        """The addresses this client holds a channel to, sorted."""
        return sorted(self._channels)

    async def _call(self, name: str, request: Any) -> Any:
        m = self.service.methods[name]
        where = f"{self.service.name}.{name}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        timeout = self.deadline_s
        attempt = 1
        while True:
            address = await self.target.pick()
            try:
                return await getattr(self._stub(address), m.rpc)(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                error = error_from_rpc(exc, where)
                unreachable = exc.code() == grpc.StatusCode.UNAVAILABLE and not _has_code(exc)
                if unreachable:
                    self.target.mark_failed(address)
                # gRPC core's words when the channel could not connect at all: the request never
                # left this process, so even a call that is not safe to repeat may go elsewhere.
                never_sent = unreachable and _NOT_CONNECTED in (exc.details() or "")
                timeout = deadline - loop.time()
                if (m.retry or never_sent) and attempt == 1 and exc.code() == grpc.StatusCode.UNAVAILABLE \
                        and timeout > _MIN_RETRY_BUDGET_S:
                    log.info("%s unavailable at %s (%s), retrying once", where, address, exc.details())
                    attempt += 1
                    continue
                raise error from None
            except grpc.RpcError as exc:  # not an AioRpcError: the channel itself failed
                self.target.mark_failed(address)
                raise ServiceUnavailable(f"{where} failed: {exc!r}") from None


def _has_code(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a handler answered (it puts its ShopCode in the trailing metadata)."""
    return any(k == MD_CODE for k, _ in (exc.trailing_metadata() or ()))


def _build(make: Callable[[], Any]) -> Any:
    # A value the wire cannot carry (an id past int64, a None where a number goes) is the caller's
    # mistake: said as such, not as a transport failure.
    try:
        return make()
    except (TypeError, ValueError) as exc:
        raise invalid(f"cannot encode the request: {exc}") from None


class GrpcUserClient(GrpcClient):
    """contracts.UserService over gRPC."""

    service = SERVICES["user"]

    async def find_user(self, user_id: int) -> User:
        return user_in(await self._call("find_user", _build(lambda: pb.FindUserRequest(user_id=user_id))))

    async def create_user(self, cmd: CreateUser) -> int:
        req = _build(lambda: pb.CreateUserRequest(
            user_name=cmd.user_name, user_password=cmd.user_password, user_money=money_out(cmd.user_money),
            user_mobile=cmd.user_mobile,
        ))
        return (await self._call("create_user", req)).user_id

    async def login(self, user_name: str, password: str) -> User:
        req = _build(lambda: pb.LoginRequest(user_name=user_name, password=password))
        return user_in(await self._call("login", req))

    async def change_money(self, cmd: ChangeMoney) -> None:
        req = _build(lambda: pb.ChangeMoneyRequest(
            user_id=cmd.user_id, order_id=cmd.order_id, money=money_out(cmd.money), log_type=int(cmd.log_type),
        ))
        await self._call("change_money", req)


class GrpcGoodsClient(GrpcClient):
    """contracts.GoodsService over gRPC."""

    service = SERVICES["goods"]

    async def find_goods(self, goods_id: int) -> Goods:
        return goods_in(await self._call("find_goods", _build(lambda: pb.FindGoodsRequest(goods_id=goods_id))))

    async def create_goods(self, cmd: CreateGoods) -> int:
        req = _build(lambda: pb.CreateGoodsRequest(
            goods_name=cmd.goods_name, goods_number=cmd.goods_number, goods_price=money_out(cmd.goods_price),
            goods_desc=cmd.goods_desc,
        ))
        return (await self._call("create_goods", req)).goods_id

    async def reduce_stock(self, cmd: ReduceStock) -> None:
        req = _build(lambda: pb.ReduceStockRequest(
            order_id=cmd.order_id, goods_id=cmd.goods_id, goods_number=cmd.goods_number,
        ))
        await self._call("reduce_stock", req)


class GrpcCouponClient(GrpcClient):
    """contracts.CouponService over gRPC."""

    service = SERVICES["coupon"]

    async def find_coupon(self, coupon_id: int) -> Coupon:
        return coupon_in(await self._call("find_coupon", _build(lambda: pb.FindCouponRequest(coupon_id=coupon_id))))

    async def create_coupon(self, cmd: CreateCoupon) -> int:
        req = _build(lambda: pb.CreateCouponRequest(user_id=cmd.user_id, coupon_price=money_out(cmd.coupon_price)))
        return (await self._call("create_coupon", req)).coupon_id

    async def use_coupon(self, cmd: UseCoupon) -> None:
        req = _build(lambda: pb.UseCouponRequest(coupon_id=cmd.coupon_id, user_id=cmd.user_id, order_id=cmd.order_id))
        await self._call("use_coupon", req)


class GrpcOrderClient(GrpcClient):
    """contracts.OrderService over gRPC. Placing an order waits on the participants (and may settle a
    failure): give it a deadline to match. A refusal or failure keeps its data ({"orderId": ...})."""

    service = SERVICES["order"]

    async def confirm_order(self, cmd: PlaceOrder) -> Order:
        req = _build(lambda: opb.ConfirmOrderRequest(
            user_id=cmd.user_id, goods_id=cmd.goods_id, goods_number=cmd.goods_number,
            goods_price=money_out(cmd.goods_price), shipping_fee=money_out(cmd.shipping_fee),
            order_amount=money_out(cmd.order_amount), address=cmd.address, coupon_id=cmd.coupon_id,
            money_paid=money_out(cmd.money_paid), consignee=cmd.consignee,
        ))
        return order_in(await self._call("confirm_order", req))

    async def find_order(self, order_id: int) -> Order:
        return order_in(await self._call("find_order", _build(lambda: opb.FindOrderRequest(order_id=order_id))))

    async def cancel_order(self, order_id: int, user_id: int) -> Order:
        req = _build(lambda: opb.CancelOrderRequest(order_id=order_id, user_id=user_id))
        return order_in(await self._call("cancel_order", req))

    async def refund_order(self, order_id: int, user_id: int) -> Order:
        req = _build(lambda: opb.RefundOrderRequest(order_id=order_id, user_id=user_id))
        return order_in(await self._call("refund_order", req))


class GrpcPayClient(GrpcClient):
    """contracts.PayService over gRPC."""

    service = SERVICES["pay"]

    async def create_payment(self, order_id: int, user_id: int, pay_amount: Decimal) -> Payment:
        req = _build(lambda: opb.CreatePaymentRequest(
            order_id=order_id, user_id=user_id, pay_amount=money_out(pay_amount),
        ))
        return payment_in(await self._call("create_payment", req))

    async def find_payment(self, pay_id: int) -> Payment:
        return payment_in(await self._call("find_payment", _build(lambda: opb.FindPaymentRequest(pay_id=pay_id))))

    async def notify(self, n: Notification) -> None:
        req = _build(lambda: opb.NotifyRequest(timestamp=n.timestamp, nonce=n.nonce, signature=n.signature, body=n.body))
        await self._call("notify", req)


CLIENTS: dict[str, type[GrpcClient]] = {
    "user": GrpcUserClient, "goods": GrpcGoodsClient, "coupon": GrpcCouponClient,
    "order": GrpcOrderClient, "pay": GrpcPayClient,
}
