from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AuditFactsRequest(_message.Message):
    __slots__ = ("since_id", "below_id", "order_ids", "limit", "sent_since_ms", "entities", "strict")
    SINCE_ID_FIELD_NUMBER: _ClassVar[int]
    BELOW_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SENT_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    since_id: int
    below_id: int
    order_ids: _containers.RepeatedScalarFieldContainer[int]
    limit: int
    sent_since_ms: int
    entities: bool
    strict: bool
    def __init__(self, since_id: _Optional[int] = ..., below_id: _Optional[int] = ..., order_ids: _Optional[_Iterable[int]] = ..., limit: _Optional[int] = ..., sent_since_ms: _Optional[int] = ..., entities: _Optional[bool] = ..., strict: _Optional[bool] = ...) -> None: ...

class AuditFactsReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: bytes
    def __init__(self, json: _Optional[bytes] = ...) -> None: ...

class TimelineRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    def __init__(self, order_id: _Optional[int] = ...) -> None: ...

class TimelineReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: bytes
    def __init__(self, json: _Optional[bytes] = ...) -> None: ...
