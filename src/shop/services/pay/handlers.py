"""The pay service: payments for confirmed orders, and the platform's notification.

The notification is answered as soon as the payment is marked paid (1 -> 2 by compare-and-set)
with its `paid` message in the same transaction; the order status, points and the payment log
follow from that message, after the answer (ARCHITECTURE.md point 8).
"""
import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

import orjson

from shop.common.clock import utcnow
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import IdWorker, parse_id
from shop.common.money import fmt, parse_money
from shop.common.text import check_text
from shop.common.timeline import TimelineEvent, from_times
from shop.infra.db import EVERYTHING, AuditScope, Database, Row, UnitOfWork, as_record, find_one
from shop.infra.faults import Faults
from shop.infra.messaging import Consumes, Inbox, Message, Outbox
from shop.infra.signing import Verifier
from shop.services.order.contracts import (
    ORDER_TOPIC,
    TAG_REFUND,
    TAG_REFUND_PAYMENT,
    OrderService,
)
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.pay import repository as repo
from shop.services.pay.contracts import (
    Notification,
    PayFacts,
    Payment,
    PaymentPaid,
    PaymentPlatform,
    PaymentState,
)
from shop.services.pay.domain import PaymentStatus
from shop.services.pay.models import inbox

AFTER_MARK_PAID = "pay.after_mark_paid"  # a fault point (SHOP_FAULTS=1): paid, the platform not yet answered
log = logging.getLogger("shop.pay")


INBOX = Inbox(inbox)

PAY_TIMES = {"create_time": "pay.created", "paid_time": "pay.notified", "refund_time": "pay.refunded"}


def _bad_signature(why: str) -> ShopError:
    return ShopError(ShopCode.SHOP_PAYMENT_SIGNATURE_INVALID, why)


class PayHandlers:
    def __init__(
        self, db: Database, ids: IdWorker, outbox: Outbox, *, orders: OrderService, platform: PaymentPlatform,
        verifier: Verifier, notify_url: str, faults: Faults, wake: Callable[[], None], window_s: float = 300.0,
    ) -> None:
        self.db = db
        self.ids = ids
        self.outbox = outbox
        self.orders = orders
        self.platform = platform
        self.verifier = verifier
        self.notify_url = notify_url
        self.faults = faults
        self.window_s = window_s
        self.wake = wake  # the relay's: the paid message leaves at once, not at the next poll

    async def create_payment(self, order_id: int, user_id: int, pay_amount: Decimal) -> Payment:
        order = await self.orders.find_order(order_id)
        if order.user_id != user_id:
            raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "not your order", http_status=403)
        if order.pay_status == PayStatus.PAID:
            raise ShopError(ShopCode.SHOP_ORDER_PAY_STATUS_IS_PAY)
        if order.order_status != OrderStatus.CONFIRMED:
            raise ShopError(ShopCode.SHOP_ORDER_STATUS_INVALID, "only a confirmed order can be paid")
        if pay_amount != order.pay_amount:
            raise ShopError(ShopCode.SHOP_PAYMENT_AMOUNT_INVALID, f"the order's pay amount is {order.pay_amount}")
        async with self.db.unit_of_work() as uow:
            # One payment per order: a second request finds the open one.
            await repo.insert(uow, pay_id=self.ids.next_id(), order_id=order_id, user_id=user_id,
                              pay_amount=order.pay_amount, create_time=utcnow())
            row = await repo.find_by_order(uow, order_id)
            await uow.commit()
        payment = as_record(Payment, row)
        if payment.is_paid == PaymentStatus.PAID:
            raise ShopError(ShopCode.SHOP_ORDER_PAY_STATUS_IS_PAY)
        # Idempotent at the platform: asked again whenever the open payment is handed out.
        await self.platform.precreate(payment.pay_id, payment.pay_amount, self.notify_url)
        return payment

    async def find_payment(self, pay_id: int) -> Payment:
        row = await find_one(self.db, repo.FIND, ShopCode.SHOP_PAYMENT_NOT_FOUND, pay_id=pay_id)
        return as_record(Payment, row)

    async def notify(self, n: Notification) -> None:
        """Verify, check, mark paid with its message, return: the caller answers at once."""
        if not (n.timestamp and n.nonce and n.signature):
            raise _bad_signature("missing signature headers")
        if not self.verifier.verify(n.timestamp, n.nonce, n.body, n.signature):
            raise _bad_signature("bad signature")
        try:
            age = abs(time.time() - int(n.timestamp))
        except ValueError:
            raise _bad_signature("bad timestamp") from None
        if age > self.window_s:  # a replay of an old, genuinely signed notification
            raise _bad_signature("stale timestamp")
        pay_id, is_paid, amount, trade_no = _parse(n.body)
        if is_paid != PaymentStatus.PAID:
            return  # nothing happened at the platform: nothing to do, and nothing to retry
        async with self.db.unit_of_work() as uow:
            row = await repo.find(uow, pay_id)
            if row is None:
                raise ShopError(ShopCode.SHOP_PAYMENT_NOT_FOUND)
            if amount != row["pay_amount"]:
                raise ShopError(ShopCode.SHOP_PAYMENT_AMOUNT_INVALID, "amount differs from the payment's")
            if await repo.mark_paid(uow, pay_id, trade_no, utcnow()):
                paid = PaymentPaid(pay_id, row["order_id"], row["pay_amount"], trade_no)
                await self.outbox.add(uow, paid.to_message())
            await uow.commit()
        await self.faults.hit(AFTER_MARK_PAID)
        self.wake()

    async def refund_at_platform(self, msg: Message) -> None:
        """Before the consumer's transaction (an external call holds no database transaction):
        the platform refund, idempotent there, so a redelivery asks again harmlessly."""
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await repo.find_by_order(uow, int(msg.key))
        if row is not None and row["is_paid"] == PaymentStatus.PAID:
            await self.platform.refund(row["pay_id"])

    async def on_refund(self, uow: UnitOfWork, msg: Message) -> None:
        row = await repo.find_by_order(uow, int(msg.key))
        if row is not None:
            await repo.mark_refunded(uow, row["pay_id"], utcnow())

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await repo.find_by_order(uow, order_id)
            events = await self.outbox.sent_events(uow, str(order_id), "pay")
            events += await INBOX.handled_events(uow, str(order_id), "pay")
        if row is not None:
            detail = {"payId": str(row["pay_id"]), "payAmount": fmt(row["pay_amount"])}
            events += from_times(row, "pay", PAY_TIMES, detail)
        return events

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> PayFacts:
        async with scope.unit_of_work(self.db) as uow:
            rows: Sequence[Row] = []
            if not scope.entities:
                rows = await (uow.fetchall(repo.ALL) if scope.whole else repo.OF_ORDERS.fetch(uow, scope))
            due = await self.outbox.count_due(uow)
            sent = await self.outbox.sent_keys(uow, scope.sent_since_ms) if scope.sent_since_ms else []
        return PayFacts(payments={r["order_id"]: as_record(PaymentState, r) for r in rows}, outbox_due=due,
                        sent=[int(k) for k in sent])


CONSUMES = (
    Consumes(
        "pay", ORDER_TOPIC, {TAG_REFUND: PayHandlers.on_refund, TAG_REFUND_PAYMENT: PayHandlers.on_refund},
        before={TAG_REFUND: PayHandlers.refund_at_platform, TAG_REFUND_PAYMENT: PayHandlers.refund_at_platform},
    ),
)


def _parse(body: bytes) -> tuple[int, int, Decimal, str]:
    """A verified notification's fields, by the request rules (common/): a signature proves who sent
    it, not that it fits the database (a payId of 2^64 would overflow BIGINT)."""
    try:
        b = orjson.loads(body)
        pay_id = parse_id(b["payId"], "payId")
        is_paid = b["isPaid"]
        amount = parse_money(b["payAmount"], "payAmount")
        trade_no = check_text(b["tradeNo"], "tradeNo")
    except ShopError as e:
        raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID, f"malformed notification: {e.message}") from None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID, "malformed notification") from None
    if isinstance(is_paid, str) and is_paid.isascii() and is_paid.isdigit():
        is_paid = int(is_paid)
    if isinstance(is_paid, bool) or not isinstance(is_paid, int) or not 0 < len(trade_no) <= 64:
        raise ShopError(ShopCode.SHOP_REQUEST_PARAMETER_VALID, "malformed notification")
    return pay_id, is_paid, amount, trade_no
