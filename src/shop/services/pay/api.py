"""REST (pay-web): payments, and the platform's notification."""
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import Field

from shop.common.clock import iso
from shop.common.money import fmt
from shop.infra import metrics
from shop.infra.deps import AdminDep, UserIdDep, forbid_unless, from_state
from shop.infra.openapi import IdOut, MoneyOut, Out, Result, Time, refusals
from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, ok
from shop.services.log.contracts import LogService, PayLogEntry
from shop.services.pay.contracts import Notification, Payment, PayService

router = APIRouter(tags=["payments"])
PayDep = Annotated[PayService, from_state("pay")]
LogDep = Annotated[LogService, from_state("log")]


class CreatePaymentIn(Camel):
    order_id: IdIn
    pay_amount: MoneyIn


class PaymentOut(Out):
    pay_id: IdOut
    order_id: IdOut
    pay_amount: MoneyOut
    is_paid: Literal[1, 2]
    is_refunded: int
    trade_no: str | None
    paid_time: Time | None
    pay_url: str | None = Field(default=None, description="where the customer pays (POST /pay/createPayment only)")


class PayLogOut(Out):
    order_id: IdOut
    pay_id: IdOut
    user_id: IdOut
    pay_amount: MoneyOut
    log_time: Time


class NotificationIn(Camel):
    """The platform's notification. Documentation only: the route verifies the raw bytes' signature
    before it parses anything (services/pay/handlers.py: notify)."""

    pay_id: IdIn
    is_paid: Literal[1, 2]
    pay_amount: MoneyIn
    trade_no: str = Field(max_length=64)
    notify_id: str


def _signed_by_the_platform() -> dict[str, Any]:
    said = "signed with the platform's private key: base64 RSA-SHA256 over timestamp, nonce and the raw body"
    headers = {"X-Pay-Timestamp": "epoch seconds", "X-Pay-Nonce": "unique per notification", "X-Pay-Signature": said}
    return {
        "parameters": [{"name": name, "in": "header", "required": True, "description": what,
                        "schema": {"type": "string"}} for name, what in headers.items()],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": NotificationIn.model_json_schema(by_alias=True)}}},
    }


def payment_json(p: Payment, pay_url: str | None = None) -> dict[str, Any]:
    out = {"payId": str(p.pay_id), "orderId": str(p.order_id), "payAmount": fmt(p.pay_amount), "isPaid": p.is_paid,
           "isRefunded": p.is_refunded, "tradeNo": p.trade_no, "paidTime": iso(p.paid_time)}
    if pay_url is not None:
        out["payUrl"] = pay_url
    return out


def pay_log_json(e: PayLogEntry) -> dict[str, Any]:
    return {"orderId": str(e.order_id), "payId": str(e.pay_id), "userId": str(e.user_id),
            "payAmount": fmt(e.pay_amount), "logTime": iso(e.log_time)}


@router.post("/pay/createPayment", response_model=Result[PaymentOut], responses=refusals(403, 404, 409))
async def create_payment(body: CreatePaymentIn, user_id: UserIdDep, pay: PayDep) -> Envelope:
    p = await pay.create_payment(body.order_id, user_id, body.pay_amount)
    return ok(payment_json(p, f"/sandbox/pay/{p.pay_id}"))


@router.get("/pay/{pay_id}", response_model=Result[PaymentOut], responses=refusals(403))
async def get_payment(pay_id: IdIn, user_id: UserIdDep, pay: PayDep) -> Envelope:
    p = await pay.find_payment(pay_id)
    forbid_unless(p.user_id, user_id)
    return ok(payment_json(p))


@router.post("/pay/callbackPayment", response_model=Result[None], responses=refusals(401, 404),
             openapi_extra=_signed_by_the_platform())
async def callback(request: Request, pay: PayDep) -> Envelope:
    """The platform's notification, answered as soon as the payment is marked paid (timed: the
    platform retries what it does not hear back about in time)."""
    h = request.headers
    return await _notify(pay, h.get("x-pay-timestamp"), h.get("x-pay-nonce"), h.get("x-pay-signature"),
                         await request.body())


async def _notify(pay: PayService, timestamp: str | None, nonce: str | None, signature: str | None,
                  body: bytes) -> Envelope:
    with metrics.notify_ack():
        await pay.notify(Notification(timestamp, nonce, signature, body))
    return ok()


_SIGNED = {b"x-pay-timestamp": 0, b"x-pay-nonce": 1, b"x-pay-signature": 2}


class NotifyDirect:
    """POST /pay/callbackPayment answered by the front door itself (infra/web.py Direct), without
    FastAPI's routing and dependency solving: the route takes nothing but three headers and the raw
    body, so this answers every request the route would, with the same parts (_notify). Its
    headers read as Starlette's `headers.get()` reads them: the first of each, latin-1."""

    def __init__(self, pay: PayService, route: Any) -> None:
        self.pay = pay
        self.route = route  # the route's own object: tracing names the request's span by it

    async def answer(self, scope: dict[str, Any], body: bytes) -> Envelope:
        signed: list[str | None] = [None, None, None]
        for k, v in scope["headers"]:
            i = _SIGNED.get(k)
            if i is not None and signed[i] is None:
                signed[i] = v.decode("latin-1")
        scope["route"] = self.route
        return await _notify(self.pay, signed[0], signed[1], signed[2], body)


@router.get("/admin/payments/{pay_id}", tags=["admin"], dependencies=[AdminDep], response_model=Result[PaymentOut])
async def admin_get_payment(pay_id: IdIn, pay: PayDep) -> Envelope:
    return ok(payment_json(await pay.find_payment(pay_id)))


@router.get("/admin/paylog", tags=["admin"], dependencies=[AdminDep], response_model=Result[list[PayLogOut]])
async def admin_paylog(order_id: Annotated[IdIn, Query(alias="orderId")], log: LogDep) -> Envelope:
    return ok([pay_log_json(e) for e in await log.pay_log(order_id)])
