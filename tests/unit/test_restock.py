"""A restock's pure parts: the ledger's sums count an adjustment by its sign and never take it for an
order's step, the audit's rules read such facts right, the request's delta is checked, and the call
crosses the wire codec."""
from decimal import Decimal as D

import pytest
from google.protobuf.message_factory import GetMessageClass
from pydantic import TypeAdapter, ValidationError

from shop.admin.audit import findings
from shop.infra.ledger import LedgerFacts, adjustment_key
from shop.infra.rpc.wire import Call
from shop.infra.web import IdempotencyKey
from shop.rpc.v1 import participants_pb2 as pb
from shop.services.coupon.contracts import CouponFacts
from shop.services.goods.api import RestockIn
from shop.services.goods.contracts import MAX_STOCK, GoodsFacts, GoodsService, Restock
from shop.services.goods.repository import ADJUST, LEDGER, REDUCE, RESTORE, STOCK_IN
from shop.services.user.contracts import UserFacts

G, ORDER, KEY_IN, KEY_OUT = 7, 1001, 1002, 1003  # a goods, an order, two adjustments' keys


def row(order_id: int, kind: int, amount: int) -> dict[str, int]:
    return {"goods_id": G, "order_id": order_id, "log_type": kind, "goods_number": amount}


ROWS = [row(0, STOCK_IN, 10), row(ORDER, REDUCE, 4), row(KEY_IN, ADJUST, 6), row(KEY_OUT, ADJUST, -3),
        row(ORDER, RESTORE, 4)]


def test_the_ledger_counts_an_adjustment_by_its_sign_and_as_no_orders_step():
    facts = LEDGER.summary(ROWS)
    assert facts.ledger == {G: D(13)}  # 10 - 4 + 6 - 3 + 4
    assert facts.taken == {ORDER: {G: D(4)}} and facts.returned == {ORDER: {G: D(4)}}
    assert facts.held(KEY_IN) == {} and facts.held(KEY_OUT) == {}


def _check(orders: dict, goods: GoodsFacts) -> list[str]:
    users, coupons = UserFacts({}, {}, LedgerFacts(), set()), CouponFacts({}, LedgerFacts(), set())
    return [f.text for f in findings(orders, goods, users, coupons, pending=0, dead=[])]


def test_the_audit_takes_a_restocked_stock_for_what_its_ledger_says():
    ledger = LEDGER.summary(ROWS)
    assert _check({}, GoodsFacts({G: 13}, ledger, set())) == []
    # A stock changed without its ledger row, or a row without its change, is reported.
    assert _check({}, GoodsFacts({G: 14}, ledger, set())) == [f"goods {G}: stock 14 but its ledger says 13"]
    without_removal = LEDGER.summary(ROWS[:3] + ROWS[4:])
    assert _check({}, GoodsFacts({G: 13}, without_removal, set())) == [f"goods {G}: stock 13 but its ledger says 16"]


def test_a_scopes_adjustment_rows_are_no_unknown_orders_effects():
    """A scope of orders reads the ledger rows by the order column, where an adjustment's key is: the
    order service knows no such order, and the audit must not say the goods holds its effects."""
    scoped = LEDGER.summary([row(KEY_IN, ADJUST, 6), row(KEY_OUT, ADJUST, -3)])
    assert _check({}, GoodsFacts({}, scoped, set())) == []
    taken = LEDGER.summary([row(KEY_IN, REDUCE, 2)])  # whereas a step of an unknown order is one
    assert _check({}, GoodsFacts({}, taken, set())) == [
        f"goods holds effects of order {KEY_IN}, which the order service does not know"]


@pytest.mark.parametrize("body", [
    {"delta": 0}, {"delta": 1.0}, {"delta": 2.5}, {"delta": "3"}, {"delta": True}, {}, {"delta": None},
    {"delta": MAX_STOCK + 1}, {"delta": -MAX_STOCK - 1},
])
def test_a_delta_is_a_non_zero_json_integer_within_the_stocks_bound(body):
    with pytest.raises(ValidationError):
        RestockIn.model_validate(body)


def test_a_delta_within_its_bounds_passes_and_the_document_says_not_zero():
    assert [RestockIn.model_validate({"delta": d}).delta for d in (1, -1, MAX_STOCK, -MAX_STOCK)] == [
        1, -1, MAX_STOCK, -MAX_STOCK]
    schema = RestockIn.model_json_schema()["properties"]["delta"]
    assert schema["type"] == "integer" and schema["not"] == {"const": 0}
    assert (schema["minimum"], schema["maximum"]) == (-MAX_STOCK, MAX_STOCK)


@pytest.mark.parametrize("key", [None, "9f1c2d3e-0000-4000-8000-000000000001"])
def test_a_restock_crosses_the_wire_codec(key):
    method = pb.DESCRIPTOR.services_by_name["GoodsService"].methods_by_name["Restock"]
    call = Call(GoodsService.restock, GetMessageClass(method.input_type), GetMessageClass(method.output_type))
    cmd = Restock(2**62 + 1, -MAX_STOCK, key)  # an id past 2^53, a negative delta, with a key or none
    request = call.request((cmd,), {})
    assert call.arguments(GetMessageClass(method.input_type).FromString(request.SerializeToString())) == (cmd,)
    reply = call.reply(MAX_STOCK)
    assert call.result(GetMessageClass(method.output_type).FromString(reply.SerializeToString())) == MAX_STOCK


def test_an_idempotency_keys_adjustment_key_is_its_own_negative_bigint():
    """Negative: never an order's id nor a fresh adjustment's (positive snowflakes), never the put-in's
    0, outside every audit scope of orders; the same for the same name, another for another."""
    names = ["a", "b", "A", "a ", "x" * 255, "9f1c2d3e-0000-4000-8000-000000000001", *(f"k{i}" for i in range(2000))]
    keys = [adjustment_key(n) for n in names]
    assert all(-(2**62) <= k <= -1 for k in keys)
    assert len(set(keys)) == len(names)
    assert [adjustment_key(n) for n in names] == keys
    assert not LEDGER.summary([row(adjustment_key("a"), ADJUST, 5)]).taken  # no order's step


@pytest.mark.parametrize("value", ["", " ", "a b", "tab\there", "x" * 256, "\x7f", "caf\u00e9"])
def test_an_idempotency_key_is_one_to_255_visible_ascii_characters(value):
    """The header's rule as the route declares it (infra/web.py): what it refuses is a 422 there."""
    adapter = TypeAdapter(IdempotencyKey)
    with pytest.raises(ValidationError):
        adapter.validate_python(value)
    assert adapter.validate_python("x" * 255) == "x" * 255 and adapter.validate_python(None) is None
