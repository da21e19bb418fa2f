"""Values on the wire, the same for every service: how a call of a service's interface (its
contracts' Protocol) becomes a protobuf request, and its result a reply, and back.

The schemas (proto/shop/v1) name their fields as the contracts' dataclasses and the interface's
parameters do, so one codec serves every method: a parameter or a field is converted by its type.
Money crosses as a decimal string and ids as int64, so "4800.00" and a snowflake id past 2^53 arrive
exactly as they left; times as ISO 8601 UTC strings; an absent optional field is None; an IntEnum
as its number. The audit's facts cross as JSON, rebuilt into their dataclasses by pydantic.

Written here rather than taken from a library: protobuf's json_format and pydantic both stop at
plain values, and neither maps a Protocol's parameters to a request message.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from google.protobuf.message import Message as Proto
from google.protobuf.message_factory import GetMessageClass
from pydantic import TypeAdapter

from shop.common.errors import invalid

T = TypeVar("T")


def money_out(value: Decimal) -> str:
    # Fixed-point, never exponent form ("4800.00", not "4.8E+3"): other languages parse it too.
    return format(value, "f")


def money_in(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise invalid(f"not an amount of money: {text!r}") from None
    if not value.is_finite():
        raise invalid(f"not an amount of money: {text!r}")
    return value


def time_out(value: datetime) -> str:
    # Naive datetimes are UTC throughout the shop (common/clock.py); the Z says so on the wire.
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def time_in(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"not a time: {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _enum_in(cls: type[IntEnum]) -> Callable[[Any], Any]:
    def convert(value: Any) -> IntEnum:
        try:
            return cls(value)
        except ValueError:
            raise invalid(f"unknown {cls.__name__} {value}") from None

    return convert


def _plain(value: Any) -> Any:
    return value


def _converters(t: Any) -> tuple[bool, Callable[[Any], Any], Callable[[Any], Any]]:
    """(optional, to the wire, from the wire) for a field or parameter of type t."""
    optional = False
    if get_origin(t) in (Union, UnionType):
        args = [a for a in get_args(t) if a is not NoneType]
        optional, t = len(args) < len(get_args(t)), args[0]
    if t is Decimal:
        return optional, money_out, money_in
    if t is datetime:
        return optional, time_out, time_in
    if isinstance(t, type) and issubclass(t, IntEnum):
        return optional, int, _enum_in(t)
    return optional, _plain, _plain


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    optional: bool
    out: Callable[[Any], Any]
    into: Callable[[Any], Any]
    default: Any  # used when the wire leaves a required string empty (an older client)
    items: type[Any] | None = None  # a list of these dataclasses: a repeated message field

    def read(self, m: Any) -> Any:
        if self.items is not None:
            return [dataclass_in(self.items, e) for e in getattr(m, self.name)]
        if self.optional and not m.HasField(self.name):
            return None
        raw = getattr(m, self.name)
        if raw == "" and self.default is not dataclasses.MISSING:
            return self.default
        return self.into(raw)

    def write(self, value: Any) -> Any:
        return None if value is None else self.out(value)


def _field(name: str, t: Any, default: Any = dataclasses.MISSING) -> _Field:
    if get_origin(t) is list and dataclasses.is_dataclass(get_args(t)[0]):
        return _Field(name, False, _plain, _plain, default, items=get_args(t)[0])
    if get_origin(t) is tuple:  # of plain values: a repeated scalar field, read back as a tuple
        return _Field(name, False, list, tuple, default)
    optional, out, into = _converters(t)
    return _Field(name, optional, out, into, default)


_FIELDS: dict[type[Any], tuple[_Field, ...]] = {}  # by dataclass, worked out once


def _fields(cls: type[Any]) -> tuple[_Field, ...]:
    if cls not in _FIELDS:
        hints = get_type_hints(cls)
        _FIELDS[cls] = tuple(_field(f.name, hints[f.name], f.default) for f in dataclasses.fields(cls))
    return _FIELDS[cls]


def build(make: Callable[[], T]) -> T:
    """A message. A value the wire cannot carry (an id past int64, a None where a number goes) is
    the caller's mistake: said as such, not as a transport failure."""
    try:
        return make()
    except (TypeError, ValueError) as exc:
        raise invalid(f"cannot encode the request: {exc}") from None


def _message(cls: type[Proto], fields: Sequence[_Field], values: Sequence[Any]) -> Proto:
    def make() -> Proto:
        kwargs = {}
        for f, v in zip(fields, values, strict=True):
            if f.items is not None:  # each element as the repeated field's message
                element = GetMessageClass(cls.DESCRIPTOR.fields_by_name[f.name].message_type)
                kwargs[f.name] = [dataclass_out(element, x) for x in v]
            else:
                kwargs[f.name] = f.write(v)
        return cls(**kwargs)

    return build(make)


def dataclass_out(cls: type[Proto], value: Any) -> Proto:
    fields = _fields(type(value))
    return _message(cls, fields, [getattr(value, f.name) for f in fields])


def dataclass_in(cls: type[T], m: Any) -> T:
    return cls(**{f.name: f.read(m) for f in _fields(cls)})


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


class Call:
    """One method of a service's interface on the wire, worked out once from its signature: its
    parameters are the request's fields (or, when it takes one dataclass, the dataclass's are), and
    its result is the reply: a dataclass as the reply's fields, a list as its one repeated field,
    a plain value as its one field, None as an empty reply, and into a reply of one `json` field
    (the audit's facts, a timeline) as JSON."""

    def __init__(self, fn: Callable[..., Any], request: type[Proto], reply: type[Proto]) -> None:
        hints = get_type_hints(fn)
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        self.request_cls, self.reply_cls = request, reply
        self.command: type[Any] | None = None
        self.default: Any = None  # the command when the caller gives none (AuditScope's everything)
        if len(params) == 1 and dataclasses.is_dataclass(hints[params[0].name]):
            self.command = hints[params[0].name]
            self.params = _fields(self.command)
            if params[0].default is not inspect.Parameter.empty:
                self.default = params[0].default
        else:
            self.params = tuple(_field(p.name, hints[p.name]) for p in params)
        self.returns: Any = None if hints["return"] is NoneType else hints["return"]
        reply_fields = reply.DESCRIPTOR.fields
        self.one_field = reply_fields[0].name if len(reply_fields) == 1 else None
        # A reply of one bytes field `json` carries the result as JSON (the audit's facts, a timeline).
        self.facts = self.one_field == "json" and reply_fields[0].type == reply_fields[0].TYPE_BYTES
        self.item = get_args(self.returns)[0] if get_origin(self.returns) is list and not self.facts else None
        self.item_cls = GetMessageClass(reply_fields[0].message_type) if self.item is not None else None
        structured = self.facts or self.returns is None or dataclasses.is_dataclass(self.returns) or self.item
        self.plain = None if structured else _field(self.one_field or "", self.returns)

    # the client's side

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Proto:
        if self.command is not None:
            given = (*args, *kwargs.values())
            (cmd,) = given if given or self.default is None else (self.default,)
            return dataclass_out(self.request_cls, cmd)
        names = [f.name for f in self.params]
        values = {**dict(zip(names, args, strict=False)), **kwargs}
        return _message(self.request_cls, self.params, [values[n] for n in names])

    def result(self, reply: Any) -> Any:
        if self.facts:
            return _adapter(self.returns).validate_json(reply.json)
        if self.item is not None:
            return [dataclass_in(self.item, e) for e in getattr(reply, self.one_field or "")]
        if self.plain is not None:
            return self.plain.read(reply)
        if self.returns is None:
            return None
        return dataclass_in(self.returns, reply)

    # the server's side

    def arguments(self, request: Any) -> tuple[Any, ...]:
        if self.command is not None:
            return (dataclass_in(self.command, request),)
        return tuple(f.read(request) for f in self.params)

    def reply(self, result: Any) -> Proto:
        if self.facts:
            return self.reply_cls(json=_adapter(self.returns).dump_json(result))
        if self.item_cls is not None:
            return self.reply_cls(**{self.one_field or "": [dataclass_out(self.item_cls, x) for x in result]})
        if self.plain is not None:
            return _message(self.reply_cls, (self.plain,), (result,))
        if self.returns is None:
            return self.reply_cls()
        return dataclass_out(self.reply_cls, result)
