from shop.rpc.v1 import facts_pb2 as _facts_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PayLogRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    def __init__(self, order_id: _Optional[int] = ...) -> None: ...

class PayLogEntry(_message.Message):
    __slots__ = ("order_id", "pay_id", "user_id", "pay_amount", "log_time")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PAY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    PAY_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    LOG_TIME_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    pay_id: int
    user_id: int
    pay_amount: str
    log_time: str
    def __init__(self, order_id: _Optional[int] = ..., pay_id: _Optional[int] = ..., user_id: _Optional[int] = ..., pay_amount: _Optional[str] = ..., log_time: _Optional[str] = ...) -> None: ...

class PayLogReply(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[PayLogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[PayLogEntry, _Mapping]]] = ...) -> None: ...
