"""The order's rules, on plain values: arithmetic and the original's validation order."""
from decimal import Decimal as D

import pytest

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.services.order.domain import check_goods, check_payment, shipping_fee


@pytest.mark.parametrize("amount,fee", [("100.00", "10.00"), ("100.01", "0.00"), ("5000.00", "0.00"),
                                        ("0.50", "10.00")])
def test_shipping_is_free_only_above_100(amount, fee):
    assert shipping_fee(D(amount)) == D(fee)


def goods(**kw):
    args = dict(goods_price=D("5000.00"), stock=10, client_price=D("5000.00"), goods_number=1,
                client_shipping_fee=D("0.00"), client_order_amount=D("5000.00"))
    args.update(kw)
    return check_goods(**args)


def code(fn, **kw):
    with pytest.raises(ShopError) as e:
        fn(**kw)
    return e.value.code


def test_goods_checks_pass_and_compute():
    assert goods() == (D("5000.00"), D("0.00"), D("5000.00"))
    assert goods(stock=1) == (D("5000.00"), D("0.00"), D("5000.00"))  # the last unit may be taken


def test_goods_checks_in_the_original_order():
    # Several things wrong at once: the first in the original's order is reported.
    assert (code(goods, client_price=D("1.00"), goods_number=99, client_shipping_fee=D("1"))
            == ShopCode.SHOP_GOODS_PRICE_INVALID)
    assert code(goods, goods_number=11, client_shipping_fee=D("1")) == ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH
    assert (code(goods, client_shipping_fee=D("10.00"), client_order_amount=D("1"))
            == ShopCode.SHOP_ORDER_SHIPPINGFEE_INVALID)
    assert code(goods, client_order_amount=D("5010.00")) == ShopCode.SHOP_ORDERAMOUNT_INVALID
    assert code(goods, goods_number=0) == ShopCode.SHOP_REQUEST_PARAMETER_VALID


def pay(**kw):
    args = dict(user_id=1, order_amount=D("5000.00"), goods_amount=D("5000.00"), fee=D("0.00"),
                money_paid=D("100.00"), user_money=D("100.00"), coupon_price=D("100.00"), coupon_user_id=1)
    args.update(kw)
    return check_payment(**args)


def test_the_original_pay_amount():
    p = pay()
    assert (p.coupon_paid, p.money_paid, p.pay_amount) == (D("100.00"), D("100.00"), D("4800.00"))


def test_payment_refusals():
    assert code(pay, coupon_used=True) == ShopCode.SHOP_COUPON_INVALID
    assert code(pay, coupon_user_id=2) == ShopCode.SHOP_COUPON_INVALID
    assert code(pay, money_paid=D("-1")) == ShopCode.SHOP_MONEY_PAID_LESS_ZERO
    assert code(pay, money_paid=D("100.01")) == ShopCode.SHOP_MONEY_PAID_INVALID
    assert (code(pay, order_amount=D("150.00"), user_money=D("1000"), money_paid=D("60"))
            == ShopCode.SHOP_PAY_AMOUNT_INVALID)
    assert pay(order_amount=D("200.00"), money_paid=D("100.00")).pay_amount == D("0.00")  # exactly zero is fine
