"""REST: the platform's pages the customer's browser and the shop call. No auth: it stands in
for an external platform, which has its own.

The sandbox's errors are ShopErrors (unknown payment 404, wrong state 409, amount 422): the
installed error handlers answer them."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import Field

from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, Text, ok
from shop.sandbox.platform import Sandbox

router = APIRouter(tags=["sandbox"])


async def get_sandbox(request: Request) -> Sandbox:
    return request.app.state.sandbox


SandboxDep = Annotated[Sandbox, Depends(get_sandbox)]


class PrecreateIn(Camel):
    pay_id: IdIn
    amount: MoneyIn
    notify_url: Text = Field(min_length=1, max_length=500)


@router.post("/sandbox/trades")
async def precreate(body: PrecreateIn, sandbox: SandboxDep) -> Envelope:
    """The merchant registers a payment (the pay service calls it); again with the same amount is a no-op."""
    await sandbox.precreate(body.pay_id, body.amount, body.notify_url)
    return ok(await sandbox.trade_by_pay_id(body.pay_id))


@router.get("/sandbox/payments/{pay_id}")
async def trade_of_payment(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    return ok(await sandbox.trade_by_pay_id(pay_id))


@router.post("/sandbox/pay/{pay_id}")
async def pay(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    return ok({"tradeNo": await sandbox.pay(pay_id)})


@router.post("/sandbox/notify/{pay_id}/resend")
async def resend(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    await sandbox.resend(pay_id)
    return ok(await sandbox.trade_by_pay_id(pay_id))


@router.post("/sandbox/refund/{pay_id}")
async def refund(pay_id: IdIn, sandbox: SandboxDep) -> Envelope:
    return ok(await sandbox.refund(pay_id))


@router.get("/sandbox/trades/{trade_no}")
async def trade(sandbox: SandboxDep, trade_no: Annotated[Text, Path(min_length=1, max_length=64)]) -> Envelope:
    return ok(await sandbox.trade(trade_no))
