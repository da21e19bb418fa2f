from shop.rpc.v1 import facts_pb2 as _facts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderLine(_message.Message):
    __slots__ = ("goods_id", "goods_number", "goods_price")
    GOODS_ID_FIELD_NUMBER: _ClassVar[int]
    GOODS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GOODS_PRICE_FIELD_NUMBER: _ClassVar[int]
    goods_id: int
    goods_number: int
    goods_price: str
    def __init__(self, goods_id: _Optional[int] = ..., goods_number: _Optional[int] = ..., goods_price: _Optional[str] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "user_id", "order_status", "pay_status", "shipping_status", "address", "consignee", "goods_id", "goods_number", "goods_price", "goods_amount", "shipping_fee", "order_amount", "coupon_id", "coupon_paid", "money_paid", "pay_amount", "add_time", "confirm_time", "pay_time", "items")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_STATUS_FIELD_NUMBER: _ClassVar[int]
    PAY_STATUS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_STATUS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONSIGNEE_FIELD_NUMBER: _ClassVar[int]
    GOODS_ID_FIELD_NUMBER: _ClassVar[int]
    GOODS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GOODS_PRICE_FIELD_NUMBER: _ClassVar[int]
    GOODS_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_FEE_FIELD_NUMBER: _ClassVar[int]
    ORDER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    COUPON_PAID_FIELD_NUMBER: _ClassVar[int]
    MONEY_PAID_FIELD_NUMBER: _ClassVar[int]
    PAY_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ADD_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_TIME_FIELD_NUMBER: _ClassVar[int]
    PAY_TIME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    user_id: int
    order_status: int
    pay_status: int
    shipping_status: int
    address: str
    consignee: str
    goods_id: int
    goods_number: int
    goods_price: str
    goods_amount: str
    shipping_fee: str
    order_amount: str
    coupon_id: int
    coupon_paid: str
    money_paid: str
    pay_amount: str
    add_time: str
    confirm_time: str
    pay_time: str
    items: _containers.RepeatedCompositeFieldContainer[OrderLine]
    def __init__(self, order_id: _Optional[int] = ..., user_id: _Optional[int] = ..., order_status: _Optional[int] = ..., pay_status: _Optional[int] = ..., shipping_status: _Optional[int] = ..., address: _Optional[str] = ..., consignee: _Optional[str] = ..., goods_id: _Optional[int] = ..., goods_number: _Optional[int] = ..., goods_price: _Optional[str] = ..., goods_amount: _Optional[str] = ..., shipping_fee: _Optional[str] = ..., order_amount: _Optional[str] = ..., coupon_id: _Optional[int] = ..., coupon_paid: _Optional[str] = ..., money_paid: _Optional[str] = ..., pay_amount: _Optional[str] = ..., add_time: _Optional[str] = ..., confirm_time: _Optional[str] = ..., pay_time: _Optional[str] = ..., items: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ...) -> None: ...

class ConfirmOrderRequest(_message.Message):
    __slots__ = ("user_id", "items", "shipping_fee", "order_amount", "address", "coupon_id", "money_paid", "consignee")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_FEE_FIELD_NUMBER: _ClassVar[int]
    ORDER_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    MONEY_PAID_FIELD_NUMBER: _ClassVar[int]
    CONSIGNEE_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    items: _containers.RepeatedCompositeFieldContainer[OrderLine]
    shipping_fee: str
    order_amount: str
    address: str
    coupon_id: int
    money_paid: str
    consignee: str
    def __init__(self, user_id: _Optional[int] = ..., items: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., shipping_fee: _Optional[str] = ..., order_amount: _Optional[str] = ..., address: _Optional[str] = ..., coupon_id: _Optional[int] = ..., money_paid: _Optional[str] = ..., consignee: _Optional[str] = ...) -> None: ...

class FindOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    def __init__(self, order_id: _Optional[int] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "user_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    user_id: int
    def __init__(self, order_id: _Optional[int] = ..., user_id: _Optional[int] = ...) -> None: ...

class RefundOrderRequest(_message.Message):
    __slots__ = ("order_id", "user_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    user_id: int
    def __init__(self, order_id: _Optional[int] = ..., user_id: _Optional[int] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("user_id", "order_status", "pay_status", "from_time", "to_time", "before_id", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_STATUS_FIELD_NUMBER: _ClassVar[int]
    PAY_STATUS_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    order_status: int
    pay_status: int
    from_time: str
    to_time: str
    before_id: int
    limit: int
    def __init__(self, user_id: _Optional[int] = ..., order_status: _Optional[int] = ..., pay_status: _Optional[int] = ..., from_time: _Optional[str] = ..., to_time: _Optional[str] = ..., before_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListOrdersReply(_message.Message):
    __slots__ = ("items", "next_before_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Order]
    next_before_id: int
    def __init__(self, items: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_before_id: _Optional[int] = ...) -> None: ...

class OverviewRequest(_message.Message):
    __slots__ = ("minutes",)
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    minutes: int
    def __init__(self, minutes: _Optional[int] = ...) -> None: ...

class MinuteCounts(_message.Message):
    __slots__ = ("at", "confirmed", "failed", "unconfirmed")
    AT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_FIELD_NUMBER: _ClassVar[int]
    at: str
    confirmed: int
    failed: int
    unconfirmed: int
    def __init__(self, at: _Optional[str] = ..., confirmed: _Optional[int] = ..., failed: _Optional[int] = ..., unconfirmed: _Optional[int] = ...) -> None: ...

class OverviewReply(_message.Message):
    __slots__ = ("per_minute", "compensations", "unconfirmed", "outbox_due")
    PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    COMPENSATIONS_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DUE_FIELD_NUMBER: _ClassVar[int]
    per_minute: _containers.RepeatedCompositeFieldContainer[MinuteCounts]
    compensations: int
    unconfirmed: int
    outbox_due: int
    def __init__(self, per_minute: _Optional[_Iterable[_Union[MinuteCounts, _Mapping]]] = ..., compensations: _Optional[int] = ..., unconfirmed: _Optional[int] = ..., outbox_due: _Optional[int] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("pay_id", "order_id", "user_id", "pay_amount", "is_paid", "trade_no", "paid_time", "is_refunded")
    PAY_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAY_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    IS_PAID_FIELD_NUMBER: _ClassVar[int]
    TRADE_NO_FIELD_NUMBER: _ClassVar[int]
    PAID_TIME_FIELD_NUMBER: _ClassVar[int]
    IS_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    pay_id: int
    order_id: int
    user_id: int
    pay_amount: str
    is_paid: int
    trade_no: str
    paid_time: str
    is_refunded: int
    def __init__(self, pay_id: _Optional[int] = ..., order_id: _Optional[int] = ..., user_id: _Optional[int] = ..., pay_amount: _Optional[str] = ..., is_paid: _Optional[int] = ..., trade_no: _Optional[str] = ..., paid_time: _Optional[str] = ..., is_refunded: _Optional[int] = ...) -> None: ...

class CreatePaymentRequest(_message.Message):
    __slots__ = ("order_id", "user_id", "pay_amount")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAY_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    user_id: int
    pay_amount: str
    def __init__(self, order_id: _Optional[int] = ..., user_id: _Optional[int] = ..., pay_amount: _Optional[str] = ...) -> None: ...

class FindPaymentRequest(_message.Message):
    __slots__ = ("pay_id",)
    PAY_ID_FIELD_NUMBER: _ClassVar[int]
    pay_id: int
    def __init__(self, pay_id: _Optional[int] = ...) -> None: ...

class NotifyRequest(_message.Message):
    __slots__ = ("timestamp", "nonce", "signature", "body")
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    timestamp: str
    nonce: str
    signature: str
    body: bytes
    def __init__(self, timestamp: _Optional[str] = ..., nonce: _Optional[str] = ..., signature: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class NotifyReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
