"""The front door's sold-out memory: a flash sale's "sold out" answered without a database.

Once an order is refused with SHOP_GOODS_NUM_NOT_ENOUGH and the refusal says the goods has 0
units left, this process remembers the goods sold out for a short TTL (SHOP_SOLD_OUT_TTL_S, at
most 0.5 s). Meanwhile an order for it is refused at once with the same 409: no call to the order
service, no database, no pre-order. When the TTL has passed, one order goes the normal way as a
probe (the others are still refused meanwhile); what it meets re-arms the memory (still 0 left)
or clears it (it sold, or was refused for any other reason, or failed).

Why a TTL in each process and not a broadcast of "sold out" / "back in stock": nothing can be
lost. A broadcast missed in a broker outage would leave an instance refusing while stock exists;
a TTL expires by itself, so every instance of every process sells again within the TTL of the
stock coming back (a restock, a compensation, a cancel), by construction. What it costs is one
request per TTL per instance (and per goods) reaching the database while the goods is sold out.

A memory is dated from when the refused request was admitted, not from when its answer came: the
stock was 0 at some moment after that, so the memory ends at most a TTL after the stock's return,
however slow the request was. A probe holds the others back while it is out, a TTL at most: a
hung probe cannot keep a goods refused, the next request probes again. With a TTL of 0.5 s at most,
an order retried after the stock's return is thus let through within 1 s.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra import metrics
from shop.services.order.contracts import Order, OrderService, PlaceOrder

# Stock that comes back is sold again within 1 s: a memory ends a TTL after the stock's return at the
# latest, and a probe then holds the others back a TTL at most.
MAX_TTL_S = 0.5
# A memory nobody asked about for this long is dropped: the first orders after that go the normal
# way together (as many as come at once) until one is refused again.
FORGET_AFTER_S = 60.0


def ordered_goods(cmd: PlaceOrder) -> Sequence[int]:
    """The goods an order takes: the one place that knows PlaceOrder's shape (a cart: every line's)."""
    return tuple(line.goods_id for line in cmd.items)


def sold_out_goods(exc: BaseException) -> int | None:
    """The goods a refusal says has nothing left (NUM_NOT_ENOUGH, goodsNumber 0), else None."""
    if not isinstance(exc, ShopError) or exc.code is not ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH:
        return None
    data = exc.data
    if not isinstance(data, dict) or data.get("goodsNumber") != 0:
        return None
    try:
        return int(data["goodsId"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Admission:
    """What the memory says of one order: refused (the goods it remembers sold out), or let
    through at `at`, as the probe of `probes` (an empty tuple: an ordinary pass)."""

    refused: int | None
    probes: tuple[int, ...] = ()
    at: float = 0.0


class SoldOut:
    """The memory: goods -> until when it is refused, and the probes out. No I/O and no awaits, so
    admit() and settle() are atomic on the event loop; the clock is injected for the tests."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"the sold-out TTL must be over 0 and at most {MAX_TTL_S} s, not {ttl_s}")
        self.ttl_s = ttl_s
        self.clock = clock
        self._until: dict[int, float] = {}  # goods -> its memory's end
        self._probe: dict[int, float] = {}  # goods -> when its probe was let through

    def _state(self, g: int, now: float) -> str:
        """"refused", "due" (a probe may go) or "free" (nothing remembered, or forgotten now)."""
        until = self._until.get(g)
        if until is None:
            return "free"
        if now < until:
            return "refused"
        probe = self._probe.get(g)
        if probe is not None and now < probe + self.ttl_s:
            return "refused"  # its probe is out: wait for what it finds (a hung one: a TTL at most)
        if probe is None and now >= until + FORGET_AFTER_S:
            del self._until[g]  # nobody asked for a long while: forgotten
            return "free"
        return "due"

    def admit(self, goods: Sequence[int]) -> Admission:
        now = self.clock()
        due: list[int] = []
        for g in goods:
            state = self._state(g, now)
            if state == "refused":
                return Admission(refused=g)
            if state == "due":
                due.append(g)
        for g in due:
            self._probe[g] = now
        return Admission(refused=None, probes=tuple(due), at=now)

    def refusing(self, goods: Sequence[int]) -> int | None:
        """The goods admit() would refuse the order for now, without letting it through (no probe
        taken): the front door's shortcut asks this before anything else is parsed."""
        now = self.clock()
        return next((g for g in goods if self._state(g, now) == "refused"), None)

    def __bool__(self) -> bool:
        """Whether anything is remembered at all (stale memories included): the cheap first question."""
        return bool(self._until)

    def settle(self, admission: Admission, exc: BaseException | None) -> None:
        """What an order let through met (None: it was placed): remember the goods it found sold
        out, forget the others it probed. Called once per admitted order, whatever happened."""
        for g in admission.probes:
            if self._probe.get(g) == admission.at:  # a later probe's result is not this one's to clear
                del self._probe[g]
        gone = None if exc is None else sold_out_goods(exc)
        for g in admission.probes:
            if g != gone:
                self._until.pop(g, None)
        if gone is not None:
            self._until[gone] = max(self._until.get(gone, 0.0), admission.at + self.ttl_s)

    def remembered(self, goods_id: int) -> bool:
        """Whether the goods is remembered sold out now (for the tests and the operator)."""
        return self.clock() < self._until.get(goods_id, float("-inf"))


def sold_out_refusal(goods_id: int) -> ShopError:
    return ShopError(ShopCode.SHOP_GOODS_NUM_NOT_ENOUGH, data={"goodsId": str(goods_id), "goodsNumber": 0})


class SoldOutGate:
    """The order service as the front door calls it: every method delegated, confirm_order gated."""

    def __init__(self, inner: OrderService, memory: SoldOut) -> None:
        self._inner = inner
        self.memory = memory

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def refusal(self, cmd: PlaceOrder) -> ShopError | None:
        """The gate's answer to the order if it is refused now, counted; None: it must go the
        normal way (confirm_order), which may make it the probe."""
        refused = self.memory.refusing(ordered_goods(cmd)) if self.memory else None
        if refused is None:
            return None
        metrics.sold_out_answered()
        return sold_out_refusal(refused)

    async def confirm_order(self, cmd: PlaceOrder) -> Order:
        admission = self.memory.admit(ordered_goods(cmd))
        if admission.refused is not None:
            metrics.sold_out_answered()
            raise sold_out_refusal(admission.refused)
        try:
            order = await self._inner.confirm_order(cmd)
        except BaseException as exc:  # cancelled too: a probe must never be left out
            self.memory.settle(admission, exc)
            raise
        self.memory.settle(admission, None)
        return order


def sold_out_gate(inner: OrderService, ttl_s: float) -> OrderService:
    return cast(OrderService, SoldOutGate(inner, SoldOut(ttl_s)))
