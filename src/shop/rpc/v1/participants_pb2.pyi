from shop.rpc.v1 import facts_pb2 as _facts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MoneyLogType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MONEY_LOG_TYPE_DEPOSIT: _ClassVar[MoneyLogType]
    MONEY_LOG_TYPE_PAID: _ClassVar[MoneyLogType]
    MONEY_LOG_TYPE_REFUND: _ClassVar[MoneyLogType]
MONEY_LOG_TYPE_DEPOSIT: MoneyLogType
MONEY_LOG_TYPE_PAID: MoneyLogType
MONEY_LOG_TYPE_REFUND: MoneyLogType

class User(_message.Message):
    __slots__ = ("user_id", "user_name", "user_mobile", "user_score", "user_money", "user_reg_time")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_MOBILE_FIELD_NUMBER: _ClassVar[int]
    USER_SCORE_FIELD_NUMBER: _ClassVar[int]
    USER_MONEY_FIELD_NUMBER: _ClassVar[int]
    USER_REG_TIME_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    user_name: str
    user_mobile: str
    user_score: int
    user_money: str
    user_reg_time: str
    def __init__(self, user_id: _Optional[int] = ..., user_name: _Optional[str] = ..., user_mobile: _Optional[str] = ..., user_score: _Optional[int] = ..., user_money: _Optional[str] = ..., user_reg_time: _Optional[str] = ...) -> None: ...

class FindUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("user_name", "user_password", "user_money", "user_mobile")
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    USER_MONEY_FIELD_NUMBER: _ClassVar[int]
    USER_MOBILE_FIELD_NUMBER: _ClassVar[int]
    user_name: str
    user_password: str
    user_money: str
    user_mobile: str
    def __init__(self, user_name: _Optional[str] = ..., user_password: _Optional[str] = ..., user_money: _Optional[str] = ..., user_mobile: _Optional[str] = ...) -> None: ...

class CreateUserReply(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("user_name", "password")
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    user_name: str
    password: str
    def __init__(self, user_name: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class ChangeMoneyRequest(_message.Message):
    __slots__ = ("user_id", "order_id", "money", "log_type")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    MONEY_FIELD_NUMBER: _ClassVar[int]
    LOG_TYPE_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    order_id: int
    money: str
    log_type: MoneyLogType
    def __init__(self, user_id: _Optional[int] = ..., order_id: _Optional[int] = ..., money: _Optional[str] = ..., log_type: _Optional[_Union[MoneyLogType, str]] = ...) -> None: ...

class ChangeMoneyReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Goods(_message.Message):
    __slots__ = ("goods_id", "goods_name", "goods_number", "goods_price", "goods_desc", "add_time")
    GOODS_ID_FIELD_NUMBER: _ClassVar[int]
    GOODS_NAME_FIELD_NUMBER: _ClassVar[int]
    GOODS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GOODS_PRICE_FIELD_NUMBER: _ClassVar[int]
    GOODS_DESC_FIELD_NUMBER: _ClassVar[int]
    ADD_TIME_FIELD_NUMBER: _ClassVar[int]
    goods_id: int
    goods_name: str
    goods_number: int
    goods_price: str
    goods_desc: str
    add_time: str
    def __init__(self, goods_id: _Optional[int] = ..., goods_name: _Optional[str] = ..., goods_number: _Optional[int] = ..., goods_price: _Optional[str] = ..., goods_desc: _Optional[str] = ..., add_time: _Optional[str] = ...) -> None: ...

class FindGoodsRequest(_message.Message):
    __slots__ = ("goods_id",)
    GOODS_ID_FIELD_NUMBER: _ClassVar[int]
    goods_id: int
    def __init__(self, goods_id: _Optional[int] = ...) -> None: ...

class CreateGoodsRequest(_message.Message):
    __slots__ = ("goods_name", "goods_number", "goods_price", "goods_desc")
    GOODS_NAME_FIELD_NUMBER: _ClassVar[int]
    GOODS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GOODS_PRICE_FIELD_NUMBER: _ClassVar[int]
    GOODS_DESC_FIELD_NUMBER: _ClassVar[int]
    goods_name: str
    goods_number: int
    goods_price: str
    goods_desc: str
    def __init__(self, goods_name: _Optional[str] = ..., goods_number: _Optional[int] = ..., goods_price: _Optional[str] = ..., goods_desc: _Optional[str] = ...) -> None: ...

class CreateGoodsReply(_message.Message):
    __slots__ = ("goods_id",)
    GOODS_ID_FIELD_NUMBER: _ClassVar[int]
    goods_id: int
    def __init__(self, goods_id: _Optional[int] = ...) -> None: ...

class StockLine(_message.Message):
    __slots__ = ("goods_id", "goods_number", "goods_price")
    GOODS_ID_FIELD_NUMBER: _ClassVar[int]
    GOODS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GOODS_PRICE_FIELD_NUMBER: _ClassVar[int]
    goods_id: int
    goods_number: int
    goods_price: str
    def __init__(self, goods_id: _Optional[int] = ..., goods_number: _Optional[int] = ..., goods_price: _Optional[str] = ...) -> None: ...

class ReduceStockRequest(_message.Message):
    __slots__ = ("order_id", "lines")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    lines: _containers.RepeatedCompositeFieldContainer[StockLine]
    def __init__(self, order_id: _Optional[int] = ..., lines: _Optional[_Iterable[_Union[StockLine, _Mapping]]] = ...) -> None: ...

class ReduceStockReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RestockRequest(_message.Message):
    __slots__ = ("goods_id", "delta", "key")
    GOODS_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    goods_id: int
    delta: int
    key: str
    def __init__(self, goods_id: _Optional[int] = ..., delta: _Optional[int] = ..., key: _Optional[str] = ...) -> None: ...

class RestockReply(_message.Message):
    __slots__ = ("goods_number",)
    GOODS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    goods_number: int
    def __init__(self, goods_number: _Optional[int] = ...) -> None: ...

class Coupon(_message.Message):
    __slots__ = ("coupon_id", "coupon_price", "user_id", "order_id", "is_used", "used_time")
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    COUPON_PRICE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    IS_USED_FIELD_NUMBER: _ClassVar[int]
    USED_TIME_FIELD_NUMBER: _ClassVar[int]
    coupon_id: int
    coupon_price: str
    user_id: int
    order_id: int
    is_used: int
    used_time: str
    def __init__(self, coupon_id: _Optional[int] = ..., coupon_price: _Optional[str] = ..., user_id: _Optional[int] = ..., order_id: _Optional[int] = ..., is_used: _Optional[int] = ..., used_time: _Optional[str] = ...) -> None: ...

class FindCouponRequest(_message.Message):
    __slots__ = ("coupon_id",)
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    coupon_id: int
    def __init__(self, coupon_id: _Optional[int] = ...) -> None: ...

class CreateCouponRequest(_message.Message):
    __slots__ = ("user_id", "coupon_price")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COUPON_PRICE_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    coupon_price: str
    def __init__(self, user_id: _Optional[int] = ..., coupon_price: _Optional[str] = ...) -> None: ...

class CreateCouponReply(_message.Message):
    __slots__ = ("coupon_id",)
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    coupon_id: int
    def __init__(self, coupon_id: _Optional[int] = ...) -> None: ...

class UseCouponRequest(_message.Message):
    __slots__ = ("coupon_id", "user_id", "order_id")
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    coupon_id: int
    user_id: int
    order_id: int
    def __init__(self, coupon_id: _Optional[int] = ..., user_id: _Optional[int] = ..., order_id: _Optional[int] = ...) -> None: ...

class UseCouponReply(_message.Message):
    __slots__ = ("coupon_price",)
    COUPON_PRICE_FIELD_NUMBER: _ClassVar[int]
    coupon_price: str
    def __init__(self, coupon_price: _Optional[str] = ...) -> None: ...
