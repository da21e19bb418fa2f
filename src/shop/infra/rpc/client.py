"""The generic gRPC client: a target (one address, or the registry's live providers), a channel per
provider, the deadline, and the retry policy.

- Every call has a deadline (`deadline_s`), sent to the server as the gRPC timeout.
- Only calls that are safe to repeat are retried, once, on UNAVAILABLE: the reads, login, and the
  three steps of an order (reduce_stock, use_coupon, change_money), whose ledger rows are keyed by
  the order so a repeat finds the first one's row, and pay's notify, a compare-and-set on the
  payment. create_* and confirm_order make a new id each time, and cancel/refund_order change an
  order's state (a repeat after a lost reply would be refused): never retried, unless the channel
  could not connect at all (the request never left; a provider that crashed and is still registered).
  A retry spends what is left of the same deadline, so a caller never waits longer than it asked.
- While `in_flight` calls are out to the service, the calls made meanwhile go out together, several
  in one gRPC call (batch.py); each is retried, refused or answered as it would have been alone.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from typing import Any, Protocol, Self

import grpc

from shop.common.errors import ServiceUnavailable, ShopError
from shop.infra import metrics
from shop.infra.rpc.batch import HOLD_S, Batcher
from shop.infra.rpc.errors import error_from_result, error_from_rpc, has_code, never_connected, status_for
from shop.infra.rpc.server import BATCH_PATH, Method, Service
from shop.infra.tls import Tls, open_channel, server_name
from shop.infra.tracing import CallSpan, Tracing, rpc_metadata
from shop.rpc.v1 import batch_pb2

log = logging.getLogger("shop.rpc.grpc")

# A retry is only worth making if this much of the deadline is left.
_MIN_RETRY_BUDGET_S = 0.05


class Target(Protocol):
    """Where a client's calls go: one fixed address, or a registry's live list of providers."""

    async def pick(self) -> str: ...

    def mark_failed(self, address: str) -> None: ...

    def live(self) -> Collection[str] | None:
        """The addresses that may still be picked, or None when that is not known."""
        ...


class Fixed:
    def __init__(self, address: str) -> None:
        self.address = address

    async def pick(self) -> str:
        return self.address

    def mark_failed(self, address: str) -> None:
        pass

    def live(self) -> Collection[str] | None:
        return None


@dataclass(frozen=True, slots=True)
class _Out:
    """One call on its way out: alone, or in a batch."""
    method: Method
    request: Any
    metadata: tuple[tuple[str, str], ...] | None
    deadline: float  # on the loop's clock


class _Failed(Exception):
    """A call that failed, alone or in a batch, and what _call needs to decide what that means."""

    def __init__(self, error: ShopError, address: str, unavailable: bool, *, answered: bool, never_sent: bool) -> None:
        self.error = error  # what the caller gets if the call is not retried
        self.address = address  # the provider it went to
        self.unavailable = unavailable  # status UNAVAILABLE: worth a retry, if the call is safe to repeat
        self.answered = answered  # a handler answered (with a code): the provider is up
        self.never_sent = never_sent  # the request never left this process

    @classmethod
    def of(cls, exc: grpc.aio.AioRpcError, address: str, where: str) -> _Failed:
        return cls(error_from_rpc(exc, where), address, exc.code() == grpc.StatusCode.UNAVAILABLE,
                   answered=has_code(exc), never_sent=never_connected(exc))


def _traceparent(metadata: tuple[tuple[str, str], ...] | None) -> str:
    return next((v for k, v in metadata or () if k == "traceparent"), "")


class GrpcClient:
    """A client of one service, with the methods of its interface (its Protocol: callers hold it as
    that type; bootstrap does). `target` is "host:port", or a Target that picks a provider per call
    (registry.Discovered: round-robin over the live providers in Zookeeper). A channel per address
    is opened on first use, on the running loop (a grpc.aio channel belongs to the loop it was made
    on); `close()` ends them.

    A call that fails without reaching a handler (connection refused or reset: the provider is
    gone) marks that provider failed, so the next calls go to the others until the registry drops
    it; a retry-safe call is retried once at once, on the next provider.

    A provider restarted on a new port is a new address. When a call first needs a channel to an
    address, the channels to addresses the target no longer lists are closed (after their calls in
    flight, within one deadline), so a long-lived client keeps only the channels it can use."""

    def __init__(
        self, service: Service, target: str | Target, deadline_s: float = 5.0, *, tls: Tls | None,
        channel: grpc.aio.Channel | None = None, tracing: Tracing = Tracing.OFF, in_flight: int | None = 2,
        hold_s: float = HOLD_S,
    ) -> None:
        self.service = service
        # Mutual TLS: this process's certificate, and only a server certified as this service is
        # accepted. None: plain gRPC (SHOP_RPC_TLS=off, to measure what TLS costs). Required, as in serve().
        self.tls = tls
        self.tracing = tracing  # a CLIENT span around every call (infra/tracing.py)
        if deadline_s <= 0:
            raise ValueError("deadline_s must be positive: every call has a deadline")
        self.target: Target = Fixed(target) if isinstance(target, str) else target
        self.deadline_s = deadline_s
        # Per address: the service's stub, and BatchService.Call's (batch.py).
        self._stubs: dict[str, tuple[Any, Any]] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()  # channels being closed after their calls
        if channel is not None:
            assert isinstance(target, str), "a channel goes with a fixed address"
            self._channels[target] = channel
            self._stubs[target] = self._stubs_of(channel)
        # At most `in_flight` gRPC calls out at a time; the calls made meanwhile go out together
        # (batch.py). None: every call alone, however many are out.
        self._batcher: Batcher[_Out, Any] = Batcher(self._alone, self._together, in_flight=in_flight, hold_s=hold_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._batcher.close()
        channels, self._channels, self._stubs = self._channels, {}, {}
        for ch in channels.values():
            await ch.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _stubs_of(self, channel: grpc.aio.Channel) -> tuple[Any, Any]:
        return self.service.stub(channel), channel.unary_unary(
            BATCH_PATH, request_serializer=batch_pb2.Batch.SerializeToString,
            response_deserializer=batch_pb2.BatchResults.FromString)

    def _stub(self, address: str) -> tuple[Any, Any]:
        stubs = self._stubs.get(address)
        if stubs is None:
            self._prune()
            channel = open_channel(address, self.tls, server_name(self.service.name))
            self._channels[address] = channel
            stubs = self._stubs[address] = self._stubs_of(channel)
        return stubs

    def _prune(self) -> None:
        """Close the channels to addresses the target no longer lists. Done only when a new
        channel opens: that is when providers have changed, and it keeps the hot path a lookup."""
        live = self.target.live()
        if live is None:
            return
        for address in [a for a in self._channels if a not in live]:
            channel = self._channels.pop(address)
            self._stubs.pop(address, None)
            # A provider that stops cleanly leaves the registry first and then finishes its calls:
            # ours to it may still be in flight, so they get up to one deadline to end.
            task = asyncio.get_running_loop().create_task(channel.close(grace=self.deadline_s))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @property
    def batches_sent(self) -> int:
        """The gRPC calls that carried several calls (batch.py), so far."""
        return self._batcher.batches

    @property
    def open_addresses(self) -> list[str]:
        """The addresses this client holds a channel to, sorted."""
        return sorted(self._channels)

    async def _call(self, name: str, request: Any, metadata: tuple[tuple[str, str], ...] | None) -> Any:
        m = self.service.methods[name]
        where = f"{self.service.name}.{name}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        attempt = 1
        while True:
            try:
                return await self._batcher(_Out(m, request, metadata, deadline))
            except _Failed as failed:
                if failed.unavailable and not failed.answered:
                    self.target.mark_failed(failed.address)
                # never_sent: the request never left this process, so even a call not safe to
                # repeat may go elsewhere.
                if (m.retry or failed.never_sent) and attempt == 1 and failed.unavailable \
                        and deadline - loop.time() > _MIN_RETRY_BUDGET_S:
                    log.info("%s unavailable at %s (%s), retrying once", where, failed.address, failed.error.message)
                    attempt += 1
                    continue
                raise failed.error from None

    async def _alone(self, out: _Out) -> Any:
        """One call in a gRPC call of its own."""
        address = await self.target.pick()
        stub, _ = self._stub(address)
        return await self._sent(address, f"{self.service.name}.{out.method.name}", getattr(stub, out.method.rpc)(
            out.request, timeout=out.deadline - asyncio.get_running_loop().time(), metadata=out.metadata))

    async def _sent(self, address: str, where: str, call: Awaitable[Any]) -> Any:
        """A gRPC call's answer, or how it failed: _Failed for _call to judge, or the channel broken."""
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise _Failed.of(exc, address, where) from None
        except grpc.RpcError as exc:  # not an AioRpcError: the channel itself failed
            self.target.mark_failed(address)
            raise ServiceUnavailable(f"{where} failed: {exc!r}") from None

    async def _together(self, outs: list[_Out]) -> list[Any]:
        """Several calls in one (batch.py): each answered with its reply or its own refusal. A call
        whose deadline passed while it waited is not sent."""
        now = asyncio.get_running_loop().time()
        results: list[Any] = [None] * len(outs)
        sent = []
        for i, out in enumerate(outs):
            if out.deadline - now <= 0:
                results[i] = ServiceUnavailable(f"{self.service.name}.{out.method.name} timed out")
            else:
                sent.append(i)
        if not sent:
            return results
        batch = batch_pb2.Batch(items=[batch_pb2.BatchItem(
            method=outs[i].method.path, request=outs[i].request.SerializeToString(),
            traceparent=_traceparent(outs[i].metadata)) for i in sent])
        address = await self.target.pick()
        _, call = self._stub(address)
        answered = await self._sent(address, self.service.name,
                                    call(batch, timeout=min(outs[i].deadline for i in sent) - now))
        for i, result in zip(sent, answered.results, strict=True):
            if result.code:  # refused as it would have been alone: retried as that would have been
                error = error_from_result(result)
                results[i] = _Failed(error, address, status_for(error.code) == grpc.StatusCode.UNAVAILABLE,
                                     answered=True, never_sent=False)
            else:
                results[i] = outs[i].method.call.reply_cls.FromString(result.reply)
        return results

    def __getattr__(self, name: str) -> Any:
        """A method of the service's interface, bound once: `await client.find_user(user_id)`."""
        try:
            call = self.__dict__["service"].methods[name].call
        except KeyError:
            raise AttributeError(name) from None

        observe = metrics.rpc_observer(f"{self.service.name}.{name}")
        span = self.tracing.rpc_span(self.service.full_name, self.service.methods[name].rpc, "client")

        async def method(*args: Any, **kwargs: Any) -> Any:
            request = call.request(args, kwargs)
            if span is None:
                work = self._call(name, request, None)
                return call.result(await (work if observe is None else metrics.timed(observe, work)))
            started = span.start()
            error: BaseException | None = None
            try:
                work = self._call(name, request, rpc_metadata())
                return call.result(await (work if observe is None else metrics.timed(observe, work)))
            except BaseException as exc:
                error = exc
                raise
            finally:
                CallSpan.end(started, error)

        method.__name__ = name
        setattr(self, name, method)
        return method
