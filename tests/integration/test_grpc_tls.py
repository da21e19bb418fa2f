"""Mutual TLS between the processes, on a real grpc.aio server of the user service (its real
handlers on SQLite): only a caller holding a certificate of the shop's CA gets through, only the
order service may move a balance, a client accepts only the service it meant to call, and every
refused call changes nothing."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from argon2 import PasswordHasher

from shop.common.errors import ServiceUnavailable
from shop.common.ids import IdWorker
from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import serve
from shop.infra.tls import Tls, ensure_material, server_name
from shop.services.user import rpc as user_rpc
from shop.services.user.contracts import ChangeMoney, CreateUser, MoneyLogType
from shop.services.user.handlers import UserHandlers
from tests.conftest import TlsFor
from tests.support import service_db

DEADLINE_S = 3.0


class Counting:
    """The user handlers, counting the calls that reached them."""

    def __init__(self, inner: UserHandlers) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            self.calls.append(name)
            return await target(*args)

        return call


@dataclass
class UserServer:
    address: str
    handlers: Counting
    user_id: int


@pytest.fixture
async def user_server(tmp_path: Path, tls: TlsFor) -> AsyncIterator[UserServer]:
    db = await service_db("user", tmp_path)
    handlers = UserHandlers(db, IdWorker(1, 1), PasswordHasher(time_cost=1, memory_cost=1024))
    user_id = await handlers.create_user(CreateUser("alice", "pw", Decimal("100.00")))
    counting = Counting(handlers)
    server = await serve([(user_rpc.SERVICE, counting)], "127.0.0.1", 0, tls=tls("user"))
    try:
        yield UserServer(f"127.0.0.1:{server.port}", counting, user_id)
    finally:
        await server.stop(None)
        await db.close()


def pay(user_id: int, order_id: int) -> ChangeMoney:
    return ChangeMoney(user_id, order_id, Decimal("10.00"), MoneyLogType.PAID)


async def test_only_a_certificate_of_the_shops_ca_gets_through(user_server: UserServer, tls: TlsFor,
                                                                 tmp_path: Path) -> None:
    s = user_server
    async with GrpcClient(user_rpc.SERVICE, s.address, DEADLINE_S, tls=tls("order")) as order:
        await order.change_money(pay(s.user_id, 1))
        assert (await order.find_user(s.user_id)).user_money == Decimal("90.00")
    reached = list(s.handlers.calls)
    assert reached == ["change_money", "find_user"]

    other_ca = tmp_path / "other-ca"
    ensure_material(other_ca, ["order"])
    ours = tls("order")
    foreign = Tls(ca=ours.ca, cert=(other_ca / "order.crt").read_bytes(), key=(other_ca / "order.key").read_bytes())
    name = (("grpc.ssl_target_name_override", server_name("user")),)
    refused: dict[str, grpc.aio.Channel] = {
        "plain gRPC": grpc.aio.insecure_channel(s.address),
        # TLS that trusts the shop's CA, but presents no certificate of its own.
        "no client certificate": grpc.aio.secure_channel(s.address, grpc.ssl_channel_credentials(ours.ca),
                                                         options=name),
        # A certificate named "order", signed by a CA the shop does not know.
        "another CA's certificate": foreign.channel(s.address, server_name("user")),
    }
    for order_id, (why, channel) in enumerate(refused.items(), start=2):
        async with GrpcClient(user_rpc.SERVICE, s.address, DEADLINE_S, tls=None, channel=channel) as client:
            with pytest.raises(ServiceUnavailable):
                await client.change_money(pay(s.user_id, order_id))
            with pytest.raises(ServiceUnavailable):
                await client.find_user(s.user_id)
        assert s.handlers.calls == reached, why  # refused at the handshake: no handler ran

    assert (await s.handlers.inner.find_user(s.user_id)).user_money == Decimal("90.00")


async def test_only_the_order_service_may_move_a_balance(user_server: UserServer, tls: TlsFor) -> None:
    s = user_server
    for role in ("web", "pay", "goods", "admin"):
        async with GrpcClient(user_rpc.SERVICE, s.address, DEADLINE_S, tls=tls(role)) as caller:
            with pytest.raises(ServiceUnavailable, match="PERMISSION_DENIED"):
                await caller.change_money(pay(s.user_id, 1))
            # Any shop process may read.
            assert (await caller.find_user(s.user_id)).user_money == Decimal("100.00")
    assert "change_money" not in s.handlers.calls
    async with GrpcClient(user_rpc.SERVICE, s.address, DEADLINE_S, tls=tls("order")) as order:
        await order.change_money(pay(s.user_id, 1))
    assert (await s.handlers.inner.find_user(s.user_id)).user_money == Decimal("90.00")


async def test_a_client_accepts_only_the_service_it_meant_to_call(user_server: UserServer, tls: TlsFor) -> None:
    """A process registered under the goods service's name but holding the user service's
    certificate (or a front door's, which serves nothing) is not taken for the goods service."""
    s = user_server
    from shop.rpc.v1 import participants_pb2 as pb
    from shop.rpc.v1 import participants_pb2_grpc as pb_grpc

    async with tls("order").channel(s.address, server_name("goods")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.UserServiceStub(channel).FindUser(pb.FindUserRequest(user_id=s.user_id), timeout=DEADLINE_S)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert s.handlers.calls == []
