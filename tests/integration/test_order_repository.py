"""The order repository applies the domain's status changes, on every backend: from every combination
of statuses, each guarded update changes the row exactly when the domain's guard holds, to exactly
the statuses (and times) the domain sets."""
from collections.abc import Awaitable
from itertools import count, product

import pytest

from shop.common.clock import utcnow
from shop.services.order import domain
from shop.services.order import repository as repo
from shop.services.order.contracts import Order
from shop.services.order.domain import ORDER, PAY, SHIPPING, OrderStatus, PayStatus, ShippingStatus
from tests.support import D

pytestmark = pytest.mark.all_backends

# The repository's function for each of the domain's transitions, as the handlers call it.
APPLY = [
    (domain.CONFIRM, lambda uow, oid, at: _applied(uow.execute(repo.CONFIRM, order_id=oid, at=at, **PRICED))),
    (domain.CONFIRM_PAID, lambda uow, oid, at: _applied(uow.execute(repo.CONFIRM_PAID, order_id=oid, at=at, **PRICED))),
    (domain.CANCEL_UNCONFIRMED, lambda uow, oid, at: repo.cancel_unconfirmed(uow, oid, at)),
    (domain.CANCEL_UNPAID, lambda uow, oid, at: repo.cancel_unpaid(uow, oid, at)),
    (domain.MARK_PAID, lambda uow, oid, at: repo.mark_paid(uow, oid, at)),
    (domain.REFUND, lambda uow, oid, at: repo.refund(uow, oid, at)),
]
STATES = list(product(OrderStatus, PayStatus, ShippingStatus))
PRICED = {"coupon_paid": D("0.00"), "pay_amount": D("20.00")}  # a confirm writes the pricing too (as _row's)


async def _applied(changed: Awaitable[int]) -> bool:
    """The saga's confirms are SagaStore's batched ones (test_saga_store.py): their statements,
    one row each."""
    return await changed == 1


def _row(order_id: int, statuses: tuple[int, int, int]) -> dict:
    return dict(
        order_id=order_id, user_id=1, order_status=int(statuses[0]), pay_status=int(statuses[1]),
        shipping_status=int(statuses[2]), address="北京", consignee=None, goods_id=1, goods_number=1,
        goods_price=D("10.00"), goods_amount=D("10.00"), shipping_fee=D("10.00"), order_amount=D("20.00"),
        coupon_id=None, coupon_paid=D("0.00"), money_paid=D("0.00"), pay_amount=D("20.00"), add_time=utcnow(),
        confirm_time=None, pay_time=None,
    )


async def test_every_guarded_update_is_the_domains_transition(shop):
    table = [t for t in vars(domain).values() if isinstance(t, domain.Transition)]
    assert sorted(map(id, table)) == sorted(id(t) for t, _ in APPLY)  # every transition, each once
    db = shop.runtime.dbs["order"]
    at = utcnow()
    order_ids = count(1)
    for transition, apply in APPLY:
        for statuses in STATES:
            before = dict(zip((ORDER, PAY, SHIPPING), statuses, strict=True))
            allowed = transition.allowed(before)  # the domain's reading of the guard, as a batched confirm uses it
            order_id = next(order_ids)
            async with db.unit_of_work() as uow:
                await repo.insert(uow, [Order(**_row(order_id, statuses))])
                changed = await apply(uow, order_id, at)
                row = await repo.find(uow, order_id)
                await uow.commit()
            expected = {**before, **transition.sets} if allowed else before
            stamped = set(transition.stamps) if allowed else set()
            got = {f: row[f] for f in (ORDER, PAY, SHIPPING)}
            assert (changed, got) == (allowed, expected), (transition, before)
            times = ("confirm_time", "pay_time", "cancel_time", "refund_time")
            assert {f for f in times if row[f] is not None} == stamped, (transition, before)
            assert all(row[f] == at for f in stamped), (transition, before, row)
