"""The order service: placing an order across the goods, coupon and user services.

The saga, as ARCHITECTURE.md point 5 has it:
1. validate what needs no participant (the cart, the amounts at the client's prices);
2. save the pre-order (status 0) with its armed cancel message, due at now + the deadline;
3. reduce stock, use the coupon, pay from the balance: each a local transaction over there,
   keyed by the order id, and each the original's check of its part (the coupon's step answers
   its price, which completes the pricing);
4. confirm: 0 -> 1 with the pricing and delete the armed message, in one transaction.
A failure at any step moves 0 -> 2 and makes the message due now; a crash leaves it to come due
at the deadline. Either way the cancel message reaches every participant, whose compensation
undoes what it did for this order, or records that it did nothing. A confirm whose answer was lost
with the database is read back first (_confirm): it may have landed.
"""
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from shop.common.clock import from_epoch_ms, now_ms, utcnow
from shop.common.codes import ShopCode
from shop.common.errors import ShopError, invalid
from shop.common.ids import MINUTE_MS, IdWorker, first_id_at, id_minute
from shop.common.timeline import TimelineEvent, from_times
from shop.infra import metrics
from shop.infra.db import EVERYTHING, AuditScope, Database, Row, UnitOfWork
from shop.infra.db.scope import NO_LIMIT
from shop.infra.failures import as_shop_error, is_unavailable, while_unavailable
from shop.infra.logs import ORDER_ID
from shop.infra.messaging import Consumes, Inbox, Message, Outbox
from shop.services.goods.contracts import Goods, StockLine, first_refused
from shop.services.order import domain
from shop.services.order import repository as repo
from shop.services.order.contracts import (
    MAX_OVERVIEW_MINUTES,
    ORDER_TOPIC,
    TAG_CANCEL,
    MinuteCounts,
    Order,
    OrderCancelled,
    OrderFacts,
    OrderOverview,
    OrderPage,
    OrderPaid,
    OrderQuery,
    OrderState,
    PlaceOrder,
    refund_message,
    refund_payment_message,
)
from shop.services.order.domain import OrderStatus, PayStatus
from shop.services.order.models import inbox
from shop.services.order.participants import Participants
from shop.services.pay.contracts import PAY_TOPIC, TAG_PAID, PaymentPaid

log = logging.getLogger("shop.order")

Settle = Callable[[str, str], Awaitable[None]]  # (tag, key): wait for that message to be handled


INBOX = Inbox(inbox)
# How long an order's request waits for its own database to answer again (a restart takes well under
# a second) when the database went away under its confirm, whose COMMIT may have landed with its
# answer lost: to read back what the confirm did, and to cancel an order that is not confirmed.
# Without it, a confirm that landed was answered 503 and its order stood confirmed.
AWAY_S = 3.0

# The refusals the original makes after checking that the user exists (the coupon's and the
# pricing's, which now come from the coupon's step, after the goods' step): a missing user is
# refused as that first.
AFTER_THE_USER = {ShopCode.SHOP_COUPON_NO_EXIST, ShopCode.SHOP_COUPON_INVALID, ShopCode.SHOP_PAY_AMOUNT_INVALID}


class OrderHandlers:
    def __init__(
        self, db: Database, ids: IdWorker, outbox: Outbox, *, participants: Participants, store: repo.SagaStore,
        settle: Settle, cancel_after_s: float, pay_timeout_s: float = 1800.0,
    ) -> None:
        self.db = db
        self.ids = ids
        self.outbox = outbox
        self.participants = participants
        self.store = store
        # Waits (bounded) for a failed order's compensation, so the caller sees it undone.
        self.settle = settle
        self.cancel_after_s = cancel_after_s
        self.pay_timeout_s = pay_timeout_s

    async def find_order(self, order_id: int) -> Order:
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await repo.find(uow, order_id)
            if row is None:
                raise ShopError(ShopCode.SHOP_ORDER_NO_EXIST)
            return (await repo.orders_of(uow, [row]))[0]

    async def list_orders(self, query: OrderQuery) -> OrderPage:
        items, more = await repo.list_orders(self.db, query)
        return OrderPage(items, items[-1].order_id if more else None)

    async def confirm_order(self, cmd: PlaceOrder) -> Order:
        try:
            pricing = await self._check(cmd)
        except ShopError:
            metrics.order_placed("rejected")
            raise
        order = self._pre_order(cmd, pricing)
        ORDER_ID.set(str(order.order_id))  # this request's log lines are about this order from here on
        cancel = OrderCancelled.of(order).to_message()
        await self.store.save_pre_order(order, cancel, due_at_ms=now_ms() + int(self.cancel_after_s * 1000))
        try:
            await self.participants.reduce_stock(order)
            coupon_price = await self.participants.use_coupon(order)
            if coupon_price is not None:
                order = self._priced(order, coupon_price)
            await self.participants.pay_from_balance(order)
            paid = order.pay_amount == 0  # coupon and balance paid it all
            confirm_time = utcnow()
            rearm_at_ms = now_ms() + int(self.pay_timeout_s * 1000)
            if not await self._confirm(order, cancel, paid=paid, at=confirm_time, rearm_at_ms=rearm_at_ms):
                # The deadline passed first and the relay cancelled the order: its cancel is out.
                raise ShopError(ShopCode.SHOP_ORDER_STATUS_INVALID, "the order was cancelled before it was confirmed")
        except Exception as exc:
            # A step's refusal (no stock, a wrong price, a used coupon, a short balance) is the
            # client's order rejected, as a refusal before the pre-order is; anything else is a failure.
            refused = isinstance(exc, ShopError) and exc.http_status < 500
            metrics.order_placed("rejected" if refused else "failed")
            await self._fail(order.order_id, cancel)
            if refused and isinstance(exc, ShopError) and exc.code in AFTER_THE_USER:
                exc = await self._missing_user(cmd.user_id) or exc
            error = as_shop_error(exc, "order placement")  # its log line carries the order (ORDER_ID)
            # Kept with the order's id: what a participant's refusal said (the goods and its stock left).
            raise error.with_data({"orderId": str(order.order_id)}) from None
        metrics.order_placed("confirmed")
        return Order(**{**{f: getattr(order, f) for f in Order.__slots__},
                        "order_status": int(OrderStatus.CONFIRMED), "confirm_time": confirm_time,
                        "pay_status": int(PayStatus.PAID if paid else PayStatus.UNPAID),
                        "pay_time": confirm_time if paid else None})

    async def _check(self, cmd: PlaceOrder) -> domain.Pricing:
        """What can be checked without the participants: the cart's shape and the amounts at the
        client's prices, the coupon counted as nothing yet (it only lowers what is left to pay). The
        goods (their prices and stock), the coupon and the balance are checked by the steps
        themselves, which refuse with the original's codes: reading them first cost a call each."""
        domain.check_lines([(line.goods_id, line.goods_number) for line in cmd.items])
        try:
            goods_amount = domain.cart_amount([(i.goods_id, i.goods_number, i.goods_price) for i in cmd.items])
            fee, order_amount = domain.check_amounts(goods_amount, client_shipping_fee=cmd.shipping_fee,
                                                     client_order_amount=cmd.order_amount)
            return domain.check_payment(user_id=cmd.user_id, order_amount=order_amount, goods_amount=goods_amount,
                                        fee=fee, money_paid=cmd.money_paid)
        except ShopError as refused:
            # The original checks the user and the goods before all of these: an order wrong twice
            # over is refused for them. Only a refused order pays for reading them.
            raise await self._earlier_refusal(cmd) or refused from None

    @staticmethod
    def _priced(order: Order, coupon_price: Decimal) -> Order:
        """The pre-order with its coupon's price counted, as the coupon's step answered it (the step
        took only the caller's own unused coupon); refused if coupon and balance pay more than the
        order amount."""
        p = domain.check_payment(user_id=order.user_id, order_amount=order.order_amount,
                                 goods_amount=order.goods_amount, fee=order.shipping_fee,
                                 money_paid=order.money_paid, coupon_price=coupon_price,
                                 coupon_user_id=order.user_id)
        return replace(order, coupon_paid=p.coupon_paid, pay_amount=p.pay_amount)

    async def _missing_user(self, user_id: int) -> ShopError | None:
        """SHOP_USER_NO_EXIST if the user does not exist (the original checks it first)."""
        try:
            await self.participants.find_user(user_id)
        except ShopError as missing:  # a user service away says nothing: the refusal stands
            return missing if missing.code is ShopCode.SHOP_USER_NO_EXIST else None
        return None

    async def _earlier_refusal(self, cmd: PlaceOrder) -> ShopError | None:
        """What the original would have refused first: a user that does not exist, then the first
        line, in the client's order, whose goods the step would refuse now."""
        missing = await self._missing_user(cmd.user_id)
        if missing is not None:
            return missing

        async def find(goods_id: int) -> Goods | None:
            try:
                return await self.participants.find_goods(goods_id)
            except ShopError as missing:
                if missing.code is ShopCode.SHOP_GOODS_NO_EXIST:
                    return None
                raise

        try:
            return await first_refused([StockLine(i.goods_id, i.goods_number, i.goods_price) for i in cmd.items], find)
        except ShopError:  # a goods service away says nothing: the refusal stands
            return None

    def _pre_order(self, cmd: PlaceOrder, p: domain.Pricing) -> Order:
        first = cmd.items[0]  # the original's columns hold the first line
        return Order(
            order_id=self.ids.next_id(), user_id=cmd.user_id, order_status=int(OrderStatus.UNCONFIRMED),
            pay_status=int(domain.PayStatus.UNPAID), shipping_status=int(domain.ShippingStatus.NOT_SHIPPED),
            address=cmd.address, consignee=cmd.consignee, goods_id=first.goods_id, goods_number=first.goods_number,
            goods_price=first.goods_price, goods_amount=p.goods_amount, shipping_fee=p.shipping_fee,
            order_amount=p.order_amount, coupon_id=cmd.coupon_id, coupon_paid=p.coupon_paid,
            money_paid=p.money_paid, pay_amount=p.pay_amount, add_time=utcnow(), items=list(cmd.items),
        )

    async def _confirm(self, order: Order, cancel: Message, *, paid: bool, at: datetime, rearm_at_ms: int) -> bool:
        """The confirm (False: the deadline's cancel got there first). If the database went away
        under it, its COMMIT may have landed with the answer lost: what it did is read back once
        the database answers again, so that an order placed is answered as placed, and one that
        is not goes on to fail (and is cancelled)."""
        try:
            return await self.store.confirm(order, cancel, paid=paid, at=at, rearm_at_ms=rearm_at_ms)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            lost = exc
        try:
            landed = await while_unavailable(lambda: self.store.confirmed(order.order_id), AWAY_S)
        except Exception as still:
            if not is_unavailable(still):
                raise
            landed = False  # still away: the order is failed, as far as it can be (_fail)
        if landed:
            log.warning("order %s: the confirm's answer was lost with the database; it landed", order.order_id)
            return True
        raise lost

    async def _fail(self, order_id: int, cancel: Message) -> None:
        """0 -> 2 and the cancel due now, in one transaction; then wait a little for it to be undone.
        Tried again while the order's database is away: the armed cancel would come due only at the
        deadline, or, after a confirm whose answer was lost and whose read-back found the database
        still away, at the payment timeout it re-armed (the cancel due now undoes a confirmed,
        unpaid order too: its guard)."""
        try:
            await while_unavailable(lambda: self.store.fail(order_id, cancel), AWAY_S)
        except Exception:  # the armed cancel still comes due, as above
            log.exception("could not cancel order %s now; its armed cancel will", order_id)
            return
        await self.settle(cancel.tag, cancel.key)

    # -- messages ------------------------------------------------------------------------------

    async def cancel_order(self, order_id: int, user_id: int) -> Order:
        """The owner cancels a confirmed, unpaid order; stock, coupon and balance come back."""
        order = await self._owned(order_id, user_id)
        if order.pay_status == PayStatus.PAID:
            raise ShopError(ShopCode.SHOP_ORDER_PAY_STATUS_IS_PAY)
        async with self.db.unit_of_work() as uow:
            cancelled = await repo.cancel_unpaid(uow, order_id)
            if cancelled:  # fire the armed cancel now
                await self.outbox.set_due(uow, TAG_CANCEL, str(order_id), now_ms())
            await uow.commit()
        if not cancelled:
            raise ShopError(ShopCode.SHOP_ORDER_STATUS_INVALID, "only a confirmed, unpaid order can be cancelled")
        await self.settle(TAG_CANCEL, str(order_id))
        return await self.find_order(order_id)

    async def refund_order(self, order_id: int, user_id: int) -> Order:
        """The owner returns a paid, unshipped order: 1 -> 4, and the refund message undoes it all."""
        order = await self._owned(order_id, user_id)
        msg = refund_message(OrderCancelled.of(order), order.pay_amount)
        async with self.db.unit_of_work() as uow:
            refunded = await repo.refund(uow, order_id)
            if refunded:
                await self.outbox.add(uow, msg)
            await uow.commit()
        if not refunded:
            raise ShopError(ShopCode.SHOP_ORDER_STATUS_INVALID, "only a paid, unshipped order can be refunded")
        await self.settle(msg.tag, msg.key)
        return await self.find_order(order_id)

    async def _owned(self, order_id: int, user_id: int) -> Order:
        order = await self.find_order(order_id)
        if order.user_id != user_id:
            raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "not your order", http_status=403)
        return order

    async def on_pay_paid(self, uow: UnitOfWork, msg: Message) -> None:
        """The payment is in: mark the order paid (compare-and-set, so it races the timeout
        fairly) and announce it; if the order no longer takes it, give the money back."""
        ev = PaymentPaid.from_message(msg)
        if await repo.mark_paid(uow, ev.order_id, utcnow()):
            await self.outbox.disarm(uow, TAG_CANCEL, str(ev.order_id))  # no payment timeout now
            row = await repo.find(uow, ev.order_id)
            await self.outbox.add(uow, OrderPaid(ev.order_id, row["user_id"], ev.pay_id, ev.pay_amount).to_message())
            return
        row = await repo.find(uow, ev.order_id)
        if row is not None and row["pay_status"] == PayStatus.PAID:
            return  # paid already (through this payment: one payment per order)
        # Cancelled (timeout, owner) or gone: the customer's money moved, so it goes back.
        await self.outbox.add(uow, refund_payment_message(ev.order_id, ev.pay_id))

    async def on_order_cancel(self, uow: UnitOfWork, msg: Message) -> None:
        await repo.cancel_unconfirmed(uow, int(msg.key))

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await repo.find(uow, order_id)
            events = await self.outbox.sent_events(uow, str(order_id), "order")
            events += await INBOX.handled_events(uow, str(order_id), "order")
        if row is not None:
            events += from_times(row, "order", ORDER_TIMES, {"orderStatus": row["order_status"]})
        return events

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> OrderFacts:
        earned: dict[int, int] = {}
        rows: list[Row] = []
        states: dict[int, OrderState] = {}
        through = 0
        async with scope.unit_of_work(self.db) as uow:
            if scope.entities:  # a recount's points: the scope's range is of users
                lo, hi = scope.bounds
                earned = {r["user_id"]: int(r["points"]) for r in await uow.fetchall(repo.EARNED, lo=lo, hi=hi)}
            elif scope.whole:
                rows = list(await uow.fetchall(repo.ALL))
            else:
                rows, through = await repo.OF_ORDERS.first(uow, replace(scope, order_ids=()))
                rows += await repo.OF_ORDERS.by_ids(uow, [i for i in scope.order_ids
                                                          if not scope.bounds[0] <= i < (through or NO_LIMIT)])
            if rows:  # the lines of the same orders: the range read (up to where it stopped), and the ids
                states = await repo.states_of(uow, rows, scope if scope.whole else replace(
                    scope, below_id=through or scope.below_id))
            due = await self.outbox.count_due(uow)
            unconfirmed = await repo.count_unconfirmed(uow)
            sent = await self.outbox.sent_keys(uow, scope.sent_since_ms) if scope.sent_since_ms else []
        return OrderFacts(orders=states, outbox_due=due,
                          unconfirmed=unconfirmed, through=through, sent=[int(k) for k in sent], earned=earned)

    async def overview(self, minutes: int) -> OrderOverview:
        if not 1 <= minutes <= MAX_OVERVIEW_MINUTES:
            raise invalid(f"minutes must be 1 to {MAX_OVERVIEW_MINUTES}")
        first = now_ms() // MINUTE_MS - minutes + 1  # epoch minutes: the window ends with the minute now running
        since = from_epoch_ms(first * MINUTE_MS)
        async with self.db.unit_of_work(readonly=True) as uow:
            groups = await uow.fetchall(repo.PER_MINUTE, from_id=first_id_at(first * MINUTE_MS))
            counts = await uow.fetchone(repo.OVERVIEW_COUNTS, since=since)
            due = await self.outbox.count_due(uow)
        by_minute = {m: domain.Outcomes() for m in range(first, first + minutes)}
        for g in groups:
            m = id_minute(int(g["minute"]))
            if m in by_minute:  # an id from a clock ahead of ours lands past the window: left out
                by_minute[m] += domain.outcomes(g["order_status"], int(g["placed"]), int(g["confirmed"]))
        per_minute = [MinuteCounts(from_epoch_ms(m * MINUTE_MS), c.confirmed, c.failed,
                                   c.unconfirmed) for m, c in by_minute.items()]
        assert counts is not None  # one row of counts, always
        return OrderOverview(per_minute, int(counts["cancelled"]) + int(counts["refunded"]),
                             int(counts["unconfirmed"]), due)


ORDER_TIMES = {"add_time": "order.saved", "confirm_time": "order.confirmed", "pay_time": "order.paid",
               "cancel_time": "order.cancelled", "refund_time": "order.refunded"}


async def guard_cancel(uow: UnitOfWork, msg: Message) -> bool:
    """Run by the relay before an order's cancel leaves, in the transaction that releases it:
    cancel the order if it is still unconfirmed (a crash mid-order) or confirmed and unpaid (the
    payment timeout); drop the message if the order was confirmed (and paid) meanwhile."""
    order_id = int(msg.key)
    if not await repo.cancel_unconfirmed(uow, order_id):
        await repo.cancel_unpaid(uow, order_id)
    row = await repo.status(uow, order_id)
    return row is None or row["order_status"] == OrderStatus.CANCELLED


CONSUMES = (
    Consumes("order", ORDER_TOPIC, {TAG_CANCEL: OrderHandlers.on_order_cancel}),
    Consumes("order", PAY_TOPIC, {TAG_PAID: OrderHandlers.on_pay_paid}),
)
