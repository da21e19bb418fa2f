"""Outcome codes: the original ShopCode, its misspellings mended, each with its HTTP status."""
from enum import Enum


class ShopCode(Enum):
    # name = (http status, human message)
    SHOP_SUCCESS = (200, "success")
    SHOP_FAIL = (500, "failed")
    SHOP_REQUEST_PARAMETER_VALID = (422, "request parameters are invalid")
    SHOP_USER_NO_EXIST = (404, "user does not exist")
    SHOP_USER_NOT_AUTHORIZED = (401, "missing or invalid credentials")
    SHOP_USER_NAME_TAKEN = (409, "user name is taken")
    SHOP_USER_LOGIN_THROTTLED = (429, "too many failed logins for this user name; try again later")
    SHOP_GOODS_NO_EXIST = (404, "goods do not exist")
    SHOP_GOODS_PRICE_INVALID = (422, "goods price does not match")
    SHOP_GOODS_NUM_NOT_ENOUGH = (409, "not enough goods in stock")
    SHOP_ORDER_SHIPPINGFEE_INVALID = (422, "shipping fee is invalid")
    SHOP_ORDERAMOUNT_INVALID = (422, "order amount is invalid")
    SHOP_PAY_AMOUNT_INVALID = (422, "pay amount is invalid")
    SHOP_COUPON_NO_EXIST = (404, "coupon does not exist")
    SHOP_COUPON_INVALID = (409, "coupon is used or not the caller's")
    SHOP_MONEY_PAID_LESS_ZERO = (422, "money paid is below zero")
    SHOP_MONEY_PAID_INVALID = (409, "money paid is more than the balance")
    SHOP_ORDER_NO_EXIST = (404, "order does not exist")
    SHOP_ORDER_STATUS_INVALID = (409, "order status does not allow this")
    SHOP_ORDER_PAY_STATUS_IS_PAY = (409, "order is already paid")
    SHOP_PAYMENT_NOT_FOUND = (404, "payment does not exist")
    SHOP_PAYMENT_AMOUNT_INVALID = (422, "payment amount is invalid")
    SHOP_PAYMENT_SIGNATURE_INVALID = (401, "payment signature is invalid")
    SHOP_MESSAGE_NO_EXIST = (404, "message does not exist")
    SHOP_NOT_FOUND = (404, "not found")
    SHOP_SERVICE_UNAVAILABLE = (503, "a dependency is unavailable")
    SHOP_REQUEST_TOO_LARGE = (413, "request body is too large")

    @property
    def http_status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]
