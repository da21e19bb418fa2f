"""REST (order-web): placing and reading orders."""
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from shop.common.clock import iso
from shop.common.errors import ShopError
from shop.common.money import ZERO, fmt
from shop.infra.auth import Tokens, bearer
from shop.infra.deps import AdminDep, UserIdDep, forbid_unless, from_state
from shop.infra.openapi import IdOut, MoneyOut, Out, Result, Time, refusals
from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, SignedMoneyIn, Text, ok
from shop.services.order.contracts import Order, OrderLine, OrderPage, OrderQuery, OrderService, PlaceOrder
from shop.services.order.domain import MAX_GOODS_NUMBER, MAX_LINES, OrderStatus, PayStatus, ShippingStatus
from shop.services.order.sold_out import SoldOutGate

router = APIRouter()
OrdersDep = Annotated[OrderService, from_state("orders")]


# Bounded here too so that the document says so (the domain checks it as well, for every front door).
GoodsNumberIn = Annotated[StrictInt, Field(ge=1, le=MAX_GOODS_NUMBER)]


class LineIn(Camel):
    goods_id: IdIn
    goods_number: GoodsNumberIn
    goods_price: MoneyIn


class LineOut(Out):
    goods_id: IdOut
    goods_number: int
    goods_price: MoneyOut
    goods_amount: MoneyOut


SINGLE = ("goodsId", "goodsNumber", "goodsPrice")


FORMS = ("goods_id", "goods_number", "goods_price", "items")


def _one_form(schema: dict[str, Any]) -> None:
    # The document says what the validators below enforce: the single goods' three fields, or
    # items, never both, and none of them null (so a generated "valid" body is one a client may
    # really send).
    for name in (*SINGLE, "items"):
        prop = schema["properties"][name]
        kinds = [k for k in prop.pop("anyOf", []) if k.get("type") != "null"]
        if len(kinds) == 1:
            prop.update(kinds[0])
        elif kinds:
            prop["anyOf"] = kinds
        prop.pop("default", None)
    schema["oneOf"] = [
        {"required": list(SINGLE), "not": {"required": ["items"]}},
        {"required": ["items"], "not": {"anyOf": [{"required": [f]} for f in SINGLE]}},
    ]


class TradeOrderIn(Camel):
    """The original's TradeOrder (one goods: goodsId, goodsNumber, goodsPrice), or a cart (items)."""

    model_config = ConfigDict(**Camel.model_config, json_schema_extra=_one_form)

    user_id: IdIn
    # Absent in the other form (None here), never null in a body (_not_null, and the document).
    goods_id: IdIn | None = None
    goods_number: GoodsNumberIn | None = None
    goods_price: MoneyIn | None = None
    items: list[LineIn] | None = Field(default=None, min_length=1, max_length=MAX_LINES)
    shipping_fee: MoneyIn
    order_amount: MoneyIn
    address: Text = Field(min_length=1, max_length=255)
    coupon_id: IdIn | None = None
    money_paid: SignedMoneyIn = ZERO
    consignee: Text | None = Field(default=None, max_length=255)

    @field_validator(*FORMS, mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("may be left out, but not null")
        return v

    @model_validator(mode="after")
    def _one_form(self) -> "TradeOrderIn":
        # The same goods on two lines is the domain's to refuse (check_lines): its refusal names
        # the goods (data.goodsId), which a refusal of the request's shape cannot.
        single = (self.goods_id, self.goods_number, self.goods_price)
        if self.items is None and None in single:
            raise ValueError("an order takes goodsId, goodsNumber and goodsPrice, or items")
        if self.items is not None and single != (None, None, None):
            raise ValueError("an order takes goodsId, goodsNumber and goodsPrice, or items, not both")
        return self

    def lines(self) -> list[OrderLine]:
        if self.items is None:
            assert self.goods_id is not None and self.goods_number is not None and self.goods_price is not None
            return [OrderLine(self.goods_id, self.goods_number, self.goods_price)]
        return [OrderLine(line.goods_id, line.goods_number, line.goods_price) for line in self.items]


class OrderOut(Out):
    order_id: IdOut
    user_id: IdOut
    order_status: OrderStatus
    pay_status: PayStatus
    shipping_status: ShippingStatus
    address: str
    consignee: str | None
    goods_id: IdOut
    goods_number: int
    goods_price: MoneyOut
    goods_amount: MoneyOut
    shipping_fee: MoneyOut
    order_amount: MoneyOut
    coupon_id: IdOut | None
    coupon_paid: MoneyOut
    money_paid: MoneyOut
    pay_amount: MoneyOut
    add_time: Time
    confirm_time: Time | None
    pay_time: Time | None
    items: list[LineOut]


class OrderPageOut(Out):
    items: list[OrderOut]
    next_cursor: IdOut | None


def _id(v: int | None) -> str | None:
    return None if v is None else str(v)


def order_json(o: Order) -> dict[str, Any]:
    return {
        "orderId": str(o.order_id), "userId": str(o.user_id), "orderStatus": o.order_status,
        "payStatus": o.pay_status, "shippingStatus": o.shipping_status, "address": o.address,
        "consignee": o.consignee, "goodsId": str(o.goods_id), "goodsNumber": o.goods_number,
        "goodsPrice": fmt(o.goods_price), "goodsAmount": fmt(o.goods_amount), "shippingFee": fmt(o.shipping_fee),
        "orderAmount": fmt(o.order_amount), "couponId": _id(o.coupon_id), "couponPaid": fmt(o.coupon_paid),
        "moneyPaid": fmt(o.money_paid), "payAmount": fmt(o.pay_amount), "addTime": iso(o.add_time),
        "confirmTime": iso(o.confirm_time), "payTime": iso(o.pay_time),
        "items": [{"goodsId": str(i.goods_id), "goodsNumber": i.goods_number, "goodsPrice": fmt(i.goods_price),
                   "goodsAmount": fmt(i.goods_amount)} for i in o.items],
    }


def place_order(body: TradeOrderIn) -> PlaceOrder:
    return PlaceOrder(
        user_id=body.user_id, items=body.lines(), shipping_fee=body.shipping_fee, order_amount=body.order_amount,
        address=body.address, coupon_id=body.coupon_id, money_paid=body.money_paid, consignee=body.consignee,
    )


@router.post("/order/confirm", tags=["orders"], response_model=Result[OrderOut], responses=refusals(403, 404, 409))
async def confirm(body: TradeOrderIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    forbid_unless(body.user_id, user_id)
    return ok(order_json(await orders.confirm_order(place_order(body))))


# Where own_order keeps its reading in the request's scope: the sold-out shortcut reads it before
# admission, the direct placing after, and one parse and token check serve both.
_OWN_ORDER = "shop.own_order"


def own_order(tokens: Tokens, scope: dict[str, Any], body: bytes) -> TradeOrderIn | None:
    """What POST /order/confirm's route checks first, checked without FastAPI: the caller (its bearer
    token), the body (TradeOrderIn, from JSON the route would read as JSON) and that the order is the
    caller's own. None on anything short of all that: the route then answers, as always."""
    if _OWN_ORDER not in scope:
        scope[_OWN_ORDER] = _read_own_order(tokens, scope, body)
    return scope[_OWN_ORDER]


def _read_own_order(tokens: Tokens, scope: dict[str, Any], body: bytes) -> TradeOrderIn | None:
    authorization = content_type = None
    for k, v in scope["headers"]:  # the first of each, as Starlette's headers.get() reads them
        if k == b"authorization" and authorization is None:
            authorization = v
        elif k == b"content-type" and content_type is None:
            content_type = v
    if authorization is None or content_type is None or not content_type.lower().startswith(b"application/json"):
        return None
    try:
        user_id = tokens.verify(bearer(authorization.decode("latin-1")))
        order = TradeOrderIn.model_validate(orjson.loads(body))
    except (ShopError, ValidationError, ValueError):  # orjson's error is a ValueError
        return None
    return order if order.user_id == user_id else None


class SoldOutShortcut:
    """POST /order/confirm for a goods the gate refuses now (services/order/sold_out.py), answered
    by the front door (infra/web.py Shortcut) without FastAPI's routing, dependencies and parsing:
    a flash sale's refusals are most of its requests. It checks what the route checks first, with
    the same parts (own_order); anything short of all that goes to the route."""

    def __init__(self, tokens: Tokens, gate: SoldOutGate) -> None:
        self.tokens = tokens
        self.gate = gate

    def armed(self) -> bool:
        return bool(self.gate.memory)

    async def answer(self, scope: dict[str, Any], body: bytes) -> ShopError | None:
        order = own_order(self.tokens, scope, body)
        return None if order is None else self.gate.refusal(place_order(order))


class ConfirmDirect:
    """POST /order/confirm itself, placed by the front door (infra/web.py Direct) once admitted, without
    FastAPI's routing and dependency solving: a third of an embedded order's CPU went to them (py-spy,
    issue 13). The same parts as the route (own_order, place_order, order_json) and the same
    answer; a request it is unsure of (no or a bad token, a body the model refuses, another user's
    order) goes to the route, which answers it as always."""

    def __init__(self, tokens: Tokens, orders: OrderService, route: Any) -> None:
        self.tokens = tokens
        self.orders = orders
        self.route = route  # the route's own object: tracing names the request's span by it

    async def answer(self, scope: dict[str, Any], body: bytes) -> Envelope | None:
        order = own_order(self.tokens, scope, body)
        if order is None:
            return None
        scope["route"] = self.route
        return ok(order_json(await self.orders.confirm_order(place_order(order))))


# The lists' query parameters: validated here, so a bad one is a 422 with its ShopCode.
Limit = Annotated[int, Query(ge=1, le=100, description="orders per page")]
Cursor = Annotated[IdIn | None, Query(description="nextCursor of the previous page")]
StatusIn = Annotated[OrderStatus | None, Query(alias="status")]


_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}")


def _date_time_text(v: Any) -> Any:
    # pydantic would also read a number of seconds ("0.5") or a bare date as a datetime: here a time
    # is what the document says, ISO 8601's date-time.
    if not (isinstance(v, str) and _DATE_TIME.match(v)):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-30T06:00:00Z")
    return v


def _utc(at: datetime) -> datetime:
    # The shop keeps naive UTC (common/clock.py); a time without a zone is taken as UTC. A zone can
    # push a time past year 1 or 9999 ("0001-01-01T00:00:00+05:00"): that is invalid input, not a 500.
    try:
        return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo is not None else at
    except OverflowError:
        raise ValueError("is out of range") from None


TimeIn = Annotated[datetime, BeforeValidator(_date_time_text), AfterValidator(_utc)]


def page_json(page: OrderPage) -> dict[str, Any]:
    return {"items": [order_json(o) for o in page.items],
            "nextCursor": None if page.next_before_id is None else str(page.next_before_id)}


@router.get("/order", tags=["orders"], response_model=Result[OrderPageOut])
async def my_orders(user_id: UserIdDep, orders: OrdersDep, status: StatusIn = None, limit: Limit = 20,
                    cursor: Cursor = None) -> Envelope:
    """The caller's own orders, newest first."""
    query = OrderQuery(user_id=user_id, order_status=status, before_id=cursor, limit=limit)
    return ok(page_json(await orders.list_orders(query)))


@router.get("/admin/orders", tags=["admin"], dependencies=[AdminDep], response_model=Result[OrderPageOut])
async def admin_orders(
    orders: OrdersDep, user_id: Annotated[IdIn | None, Query(alias="userId")] = None, status: StatusIn = None,
    pay_status: Annotated[PayStatus | None, Query(alias="payStatus")] = None,
    from_time: Annotated[TimeIn | None, Query(alias="from", description="created at or after")] = None,
    to_time: Annotated[TimeIn | None, Query(alias="to", description="created before")] = None,
    limit: Limit = 20, cursor: Cursor = None,
) -> Envelope:
    """Every order, newest first, filtered."""
    query = OrderQuery(user_id=user_id, order_status=status, pay_status=pay_status, from_time=from_time,
                       to_time=to_time, before_id=cursor, limit=limit)
    return ok(page_json(await orders.list_orders(query)))


@router.get("/order/{order_id}", tags=["orders"], response_model=Result[OrderOut], responses=refusals(403))
async def get_order(order_id: IdIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    order = await orders.find_order(order_id)
    forbid_unless(order.user_id, user_id)
    return ok(order_json(order))


@router.post("/order/{order_id}/cancel", tags=["orders"], response_model=Result[OrderOut], responses=refusals(403, 409))
async def cancel(order_id: IdIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    return ok(order_json(await orders.cancel_order(order_id, user_id)))


@router.post("/order/{order_id}/refund", tags=["orders"], response_model=Result[OrderOut], responses=refusals(403, 409))
async def refund(order_id: IdIn, user_id: UserIdDep, orders: OrdersDep) -> Envelope:
    return ok(order_json(await orders.refund_order(order_id, user_id)))


@router.get("/admin/orders/{order_id}", tags=["admin"], dependencies=[AdminDep], response_model=Result[OrderOut])
async def admin_get_order(order_id: IdIn, orders: OrdersDep) -> Envelope:
    return ok(order_json(await orders.find_order(order_id)))
