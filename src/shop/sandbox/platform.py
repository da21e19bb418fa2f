"""The payment platform stand-in (Alipay / WeChat Pay style): trades, signed notifications, refunds.

The merchant registers a payment (`precreate`), the customer pays (`pay`), and the platform
notifies the merchant's `notify_url` until it answers success, on Alipay's schedule of back-offs;
after the last one it gives up, and only a `resend` sends again. Every notification is signed
afresh (new timestamp, nonce and notifyId), as real platforms do on their retries.

The trade row is the only state: a due notification is a row with `next_notify_at <= now`, so
one that was due, or in flight, when the process stopped is sent after it starts again.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa

from shop.common.clock import now_ms, utcnow
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker
from shop.common.money import CENT, fmt
from shop.infra.db import Query, Row, SqliteDatabase, bind, insert_ignore
from shop.infra.messaging import poll_forever
from shop.infra.signing import Signer
from shop.sandbox.models import CREATED, PAID, REFUNDED, create_schema, sandbox_trade

log = logging.getLogger("shop.sandbox")

# (url, headers, body) -> True iff the shop answered success (HTTP 200, JSON success true).
Send = Callable[[str, dict[str, str], bytes], Awaitable[bool]]


class TradeNotFound(ShopError, KeyError):
    """Also a ShopError, so it crosses an RPC boundary (LocalClient) as its code, not as a failure."""

    def __init__(self, message: str) -> None:
        ShopError.__init__(self, ShopCode.SHOP_PAYMENT_NOT_FOUND, message)

    __str__ = Exception.__str__  # not KeyError's, which quotes the message


class TradeStateInvalid(ShopError, ValueError):
    def __init__(self, message: str) -> None:
        ShopError.__init__(self, ShopCode.SHOP_FAIL, message, http_status=409)


class AmountInvalid(ShopError, ValueError):
    def __init__(self, message: str, http_status: int | None = None) -> None:
        ShopError.__init__(self, ShopCode.SHOP_PAYMENT_AMOUNT_INVALID, message, http_status=http_status)


_t = sandbox_trade.c
_Q_PRECREATE = insert_ignore(
    sandbox_trade,
    **bind("trade_no", "pay_id", "amount", "notify_url", "create_time"),
    state=CREATED,
    notify_attempts=0,
    notified=0,
)
_Q_BY_PAY_ID = Query(sa.select(sandbox_trade).where(_t.pay_id == sa.bindparam("pay_id")))
_Q_BY_TRADE_NO = Query(sa.select(sandbox_trade).where(_t.trade_no == sa.bindparam("trade_no")))
_Q_PAY = Query(
    sa.update(sandbox_trade)
    .where(_t.pay_id == sa.bindparam("pay_id"), _t.state == CREATED)
    .values(state=PAID, pay_time=sa.bindparam("pay_time"), next_notify_at=sa.bindparam("due"), notify_attempts=0,
            notified=0)
)
_Q_RESEND = Query(
    sa.update(sandbox_trade)
    .where(_t.pay_id == sa.bindparam("pay_id"), _t.state == PAID)
    .values(next_notify_at=sa.bindparam("due"), notified=0)
)
_Q_REFUND = Query(
    sa.update(sandbox_trade)
    .where(_t.pay_id == sa.bindparam("pay_id"), _t.state == PAID)
    .values(state=REFUNDED, refund_time=sa.bindparam("refund_time"))
)
# Only paid trades: once refunded, the shop has heard of the payment (it asked for the refund).
_Q_DUE = Query(
    sa.select(sandbox_trade)
    .where(_t.state == PAID, _t.next_notify_at <= sa.bindparam("now"))
    .order_by(_t.next_notify_at)
    .limit(500)
)
# Both outcomes apply only if the row still holds the due time the send was started for: a
# resend that arrived meanwhile moved it, and its notification must still go out.
_Q_NOTIFIED = Query(
    sa.update(sandbox_trade)
    .where(_t.trade_no == sa.bindparam("trade_no"), _t.next_notify_at == sa.bindparam("claimed"))
    .values(notified=1, next_notify_at=None, last_notify_id=sa.bindparam("notify_id"))
)
_Q_RETRY = Query(
    sa.update(sandbox_trade)
    .where(_t.trade_no == sa.bindparam("trade_no"), _t.next_notify_at == sa.bindparam("claimed"))
    .values(notify_attempts=sa.bindparam("attempts"), next_notify_at=sa.bindparam("next_at"),
            last_notify_id=sa.bindparam("notify_id"))
)


def trade_view(row: Row) -> dict[str, str]:
    return {"tradeNo": row["trade_no"], "payId": str(row["pay_id"]), "amount": fmt(row["amount"]) or "",
            "state": row["state"]}


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the port made explicit), to compare two URLs' hosts."""
    try:
        u = urlsplit(url)
        port = u.port or {"http": 80, "https": 443}.get(u.scheme.lower())
    except ValueError:
        return ("", "", None)
    return (u.scheme.lower(), (u.hostname or "").lower(), port)


class Sandbox:
    """notify_url: the shop's notification URL (SHOP_PAY_NOTIFY_URL); the only host notified.
    merchant_key: the secret the shop presents on the calls only the merchant makes (registering
    a payment, asking for a refund: sandbox/api.py checks it)."""

    def __init__(
        self, db: SqliteDatabase, private_pem: bytes, public_pem: bytes, send: Send, schedule_s: Sequence[float],
        ids: IdWorker, *, notify_url: str, merchant_key: str, poll_s: float = 0.2, send_timeout_s: float = 10.0,
    ) -> None:
        self.db = db
        self.notify_origin = origin(notify_url)
        self.merchant_key = merchant_key
        self.public_key_pem = public_pem
        self._signer = Signer(private_pem)
        self._send = send
        self.schedule_s = tuple(schedule_s)
        self.ids = ids
        self.poll_s = poll_s
        # A sender that never returns would hold its trade's notifications for good.
        self.send_timeout_s = send_timeout_s
        self._wake = asyncio.Event()
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        create_schema(db.path)

    def use_sender(self, send: Send) -> None:
        """How notifications reach the shop: tests hand in a client bound to the app itself."""
        self._send = send

    def wake(self) -> None:
        self._wake.set()

    # -- the merchant's and the customer's calls -----------------------------------------------

    async def precreate(self, pay_id: int, amount: Decimal, notify_url: str) -> None:
        """Register a payment; again with the same amount is a no-op (the first notify_url stays).

        The notify URL must be on the shop's configured notify host, or the call is refused (422)
        before anything is recorded: the sandbox never POSTs its signed notifications, again and
        again, to an address a caller chose (a server-side request forgery). Refused rather than
        silently replaced, so a merchant whose URL is wrong hears of it at once, not by waiting for
        notifications that go elsewhere. The path is the merchant's (real platforms allow any
        callback path on the merchant's registered domain)."""
        if origin(notify_url) != self.notify_origin:
            raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID,
                            "notifyUrl must be on the shop's notify host (SHOP_PAY_NOTIFY_URL)")
        if not amount.is_finite() or amount < 0 or amount != amount.quantize(CENT):
            raise AmountInvalid(f"{amount} is not an amount of money")
        async with self.db.unit_of_work() as uow:
            await uow.execute(
                _Q_PRECREATE, trade_no=str(self.ids.next_id()), pay_id=pay_id, amount=amount, notify_url=notify_url,
                create_time=utcnow(),
            )
            row = await self._row(uow, pay_id)
            if row["amount"] != amount:
                # A valid amount, other than the one registered: a conflict with the trade (409), not bad input.
                raise AmountInvalid(f"payment {pay_id} was registered for {fmt(row['amount'])}, not {amount}", 409)
            await uow.commit()

    async def pay(self, pay_id: int) -> str:
        async with self.db.unit_of_work() as uow:
            row = await self._row(uow, pay_id)
            if row["state"] == REFUNDED:
                raise TradeStateInvalid(f"payment {pay_id} was refunded")
            if row["state"] == PAID:
                return row["trade_no"]
            await uow.execute(_Q_PAY, pay_id=pay_id, pay_time=utcnow(), due=now_ms())
            await uow.commit()
        self._wake.set()
        return row["trade_no"]

    async def resend(self, pay_id: int) -> None:
        async with self.db.unit_of_work() as uow:
            row = await self._row(uow, pay_id)
            if row["state"] != PAID:
                raise TradeStateInvalid(f"payment {pay_id} is {row['state']}, not PAID")
            due = now_ms()
            if row["next_notify_at"] == due:
                # A send started for this very due time would take the resend for its own.
                due -= 1
            await uow.execute(_Q_RESEND, pay_id=pay_id, due=due)
            await uow.commit()
        self._wake.set()

    async def refund(self, pay_id: int) -> dict[str, str]:
        async with self.db.unit_of_work() as uow:
            row = await self._row(uow, pay_id)
            if row["state"] == CREATED:
                raise TradeStateInvalid(f"payment {pay_id} is not paid")
            if row["state"] == PAID:
                await uow.execute(_Q_REFUND, pay_id=pay_id, refund_time=utcnow())
                row = await self._row(uow, pay_id)
                await uow.commit()
        return trade_view(row)

    async def trade(self, trade_no: str) -> dict[str, str]:
        row = await self.db.fetchone(_Q_BY_TRADE_NO, trade_no=trade_no)
        if row is None:
            raise TradeNotFound(f"no trade {trade_no}")
        return trade_view(row)

    async def trade_by_pay_id(self, pay_id: int) -> dict[str, str]:
        row = await self.db.fetchone(_Q_BY_PAY_ID, pay_id=pay_id)
        if row is None:
            raise TradeNotFound(f"no payment {pay_id}")
        return trade_view(row)

    async def row(self, pay_id: int) -> dict[str, Any] | None:
        """The whole trade row, notification state included (for tests and operators)."""
        row = await self.db.fetchone(_Q_BY_PAY_ID, pay_id=pay_id)
        return dict(row) if row is not None else None

    async def _row(self, uow: Any, pay_id: int) -> Row:
        row = await uow.fetchone(_Q_BY_PAY_ID, pay_id=pay_id)
        if row is None:
            raise TradeNotFound(f"no payment {pay_id}")
        return row

    # -- notifications -------------------------------------------------------------------------

    def _signed(self, row: Row) -> tuple[str, dict[str, str], bytes]:
        notify_id = os.urandom(16).hex()
        body = orjson.dumps({
            "payId": str(row["pay_id"]), "isPaid": 2, "payAmount": fmt(row["amount"]), "tradeNo": row["trade_no"],
            "notifyId": notify_id,
        })
        timestamp, nonce = str(int(time.time())), os.urandom(16).hex()
        headers = {
            "X-Pay-Timestamp": timestamp,
            "X-Pay-Nonce": nonce,
            "X-Pay-Signature": self._signer.sign(timestamp, nonce, body),
            "Content-Type": "application/json",
        }
        return notify_id, headers, body

    async def _deliver(self, row: Row) -> None:
        trade_no = row["trade_no"]
        try:
            notify_id, headers, body = self._signed(row)
            try:
                async with asyncio.timeout(self.send_timeout_s):
                    delivered = bool(await self._send(row["notify_url"], headers, body))
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, the shop did not say success
                log.warning("notification of %s to %s failed: %r", trade_no, row["notify_url"], exc)
                delivered = False
            if delivered:
                async with self.db.unit_of_work() as uow:
                    n = await uow.execute(_Q_NOTIFIED, trade_no=trade_no, claimed=row["next_notify_at"],
                                          notify_id=notify_id)
                    await uow.commit()
            else:
                attempts = row["notify_attempts"] + 1
                delay = self.schedule_s[attempts - 1] if attempts <= len(self.schedule_s) else None
                async with self.db.unit_of_work() as uow:
                    n = await uow.execute(
                        _Q_RETRY, trade_no=trade_no, claimed=row["next_notify_at"], attempts=attempts,
                        next_at=None if delay is None else now_ms() + round(delay * 1000), notify_id=notify_id,
                    )
                    await uow.commit()
                if delay is None:
                    log.warning("notification of %s: the schedule is used up after %s attempts", trade_no, attempts)
                elif delay < self.poll_s:
                    # Sooner than the next poll: come back for it on time (the margin covers ms rounding).
                    asyncio.get_running_loop().call_later(delay + 0.002, self._wake.set)
            if n == 0:
                self._wake.set()  # a resend moved the due time while this was in flight: it is due now
        except Exception:
            log.exception("notification of %s: recording the outcome failed", trade_no)
        finally:
            self._inflight.discard(trade_no)

    async def dispatch_once(self) -> int:
        rows = await self.db.fetchall(_Q_DUE, now=now_ms())
        started = 0
        for row in rows:
            trade_no = row["trade_no"]
            if trade_no in self._inflight:
                continue
            self._inflight.add(trade_no)
            # One task per send: a shop slow to answer one notification holds up no other.
            task = asyncio.create_task(self._deliver(dict(row)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def run(self) -> None:
        try:
            await poll_forever(self.dispatch_once, self._wake, self.poll_s, "sandbox dispatcher")
        finally:
            # Sends cut short stay due in the database and go out again after the next start.
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await self.db.close()

    async def drain(self) -> None:
        """Until the sends in flight have finished (their outcomes recorded)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
