"""REST: the platform's pages the customer's browser and the shop call. Mounted only where the
sandbox is switched on (SHOP_SANDBOX=1 or --demo): a shop without it has no public "mark this paid"
button. What only the merchant does (register a payment, refund one) takes the merchant key the
shop and the platform share (`Authorization: Bearer <merchant key>`, SHOP_MERCHANT_KEY or the data
dir's merchant.key), as a real platform's API takes the merchant's credentials; the customer's
pages (pay, resend, look at a trade) take none.

The sandbox's errors are ShopErrors (unknown payment 404, wrong state 409, amount 422): the
installed error handlers answer them."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import Field

from shop.infra.auth import check_secret
from shop.infra.deps import MERCHANT_KEY
from shop.infra.openapi import IdOut, MoneyOut, Out, Result, refusals
from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, Text, ok
from shop.sandbox.platform import Sandbox

router = APIRouter(tags=["sandbox"])


async def get_sandbox(request: Request) -> Sandbox:
    return request.app.state.sandbox


SandboxDep = Annotated[Sandbox, Depends(get_sandbox)]


async def merchant(request: Request, key: Annotated[str, Depends(MERCHANT_KEY)]) -> None:
    """The caller is the shop: it presents the merchant key (the platform here, or the front
    door's proxy to it, holds the same one)."""
    check_secret(key, request.app.state.sandbox.merchant_key, "merchant key")


MerchantDep = Depends(merchant)


class PrecreateIn(Camel):
    pay_id: IdIn
    amount: MoneyIn
    notify_url: Text = Field(min_length=1, max_length=500)


class TradeOut(Out):
    trade_no: str
    pay_id: IdOut
    amount: MoneyOut
    state: Literal["CREATED", "PAID", "REFUNDED"]


class TradeNoOut(Out):
    trade_no: str


# 409: the trade's state does not allow it (paying a refunded one, refunding an unpaid one). The
# merchant key's 401 comes with its bearer scheme (infra/openapi.py).
@router.post("/sandbox/trades", response_model=Result[TradeOut], responses=refusals(409),
             dependencies=[MerchantDep])
async def precreate(body: PrecreateIn, sandbox: SandboxDep) -> Envelope:
    """The merchant registers a payment (the pay service calls it); again with the same amount is a no-op."""
    await sandbox.precreate(body.pay_id, body.amount, body.notify_url)
    return ok(await sandbox.trade_by_pay_id(body.pay_id))


@router.get("/sandbox/payments/{pay_id}", response_model=Result[TradeOut])
async def trade_of_payment(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    return ok(await sandbox.trade_by_pay_id(pay_id))


@router.post("/sandbox/pay/{pay_id}", response_model=Result[TradeNoOut], responses=refusals(409))
async def pay(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    return ok({"tradeNo": await sandbox.pay(pay_id)})


@router.post("/sandbox/notify/{pay_id}/resend", response_model=Result[TradeOut], responses=refusals(409))
async def resend(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    await sandbox.resend(pay_id)
    return ok(await sandbox.trade_by_pay_id(pay_id))


@router.post("/sandbox/refund/{pay_id}", response_model=Result[TradeOut], responses=refusals(409),
             dependencies=[MerchantDep])
async def refund(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    return ok(await sandbox.refund(pay_id))


@router.get("/sandbox/trades/{trade_no}", response_model=Result[TradeOut])
async def trade(sandbox: SandboxDep, trade_no: Annotated[Text, Path(min_length=1, max_length=64)]) -> Envelope:
    return ok(await sandbox.trade(trade_no))
