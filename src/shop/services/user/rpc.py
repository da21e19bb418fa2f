"""The user service on the wire: its gRPC method table, the converters, and its client."""
from __future__ import annotations

from typing import Any

from shop.common.errors import invalid
from shop.infra.rpc.client import GrpcClient
from shop.infra.rpc.server import AUDIT_FACTS, Method, Service, method_table
from shop.infra.rpc.wire import build, money_in, money_out, opt, time_in, time_out
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.user.contracts import ChangeMoney, CreateUser, MoneyLogType, User, UserFacts


def user_out(u: User) -> pb.User:
    return pb.User(
        user_id=u.user_id, user_name=u.user_name, user_mobile=u.user_mobile, user_score=u.user_score,
        user_money=money_out(u.user_money), user_reg_time=time_out(u.user_reg_time),
    )


def user_in(m: pb.User) -> User:
    return User(
        user_id=m.user_id, user_name=m.user_name, user_mobile=opt(m, "user_mobile"), user_score=m.user_score,
        user_money=money_in(m.user_money), user_reg_time=time_in(m.user_reg_time),
    )


def _log_type_in(value: int) -> MoneyLogType:
    try:
        return MoneyLogType(value)
    except ValueError:
        raise invalid(f"unknown money log type {value}") from None


async def _find_user(h: Any, r: pb.FindUserRequest) -> pb.User:
    return user_out(await h.find_user(r.user_id))


async def _create_user(h: Any, r: pb.CreateUserRequest) -> pb.CreateUserReply:
    cmd = CreateUser(
        user_name=r.user_name, user_password=r.user_password, user_money=money_in(r.user_money),
        user_mobile=opt(r, "user_mobile"),
    )
    return pb.CreateUserReply(user_id=await h.create_user(cmd))


async def _login(h: Any, r: pb.LoginRequest) -> pb.User:
    return user_out(await h.login(r.user_name, r.password))


async def _change_money(h: Any, r: pb.ChangeMoneyRequest) -> pb.ChangeMoneyReply:
    cmd = ChangeMoney(user_id=r.user_id, order_id=r.order_id, money=money_in(r.money), log_type=_log_type_in(r.log_type))
    await h.change_money(cmd)
    return pb.ChangeMoneyReply()


SERVICE = Service(
    "user", "shop.v1.UserService",
    method_table(
        Method("FindUser", "find_user", _find_user, retry=True),
        Method("ChangeMoney", "change_money", _change_money, retry=True),
        Method("CreateUser", "create_user", _create_user, retry=False),
        Method("Login", "login", _login, retry=True),
        AUDIT_FACTS,
    ),
    pb_grpc.UserServiceStub, pb_grpc.add_UserServiceServicer_to_server,
)


class UserClient(GrpcClient):
    """contracts.UserService over gRPC."""

    service = SERVICE

    async def find_user(self, user_id: int) -> User:
        return user_in(await self._call("find_user", build(lambda: pb.FindUserRequest(user_id=user_id))))

    async def create_user(self, cmd: CreateUser) -> int:
        req = build(lambda: pb.CreateUserRequest(
            user_name=cmd.user_name, user_password=cmd.user_password, user_money=money_out(cmd.user_money),
            user_mobile=cmd.user_mobile,
        ))
        return int((await self._call("create_user", req)).user_id)

    async def login(self, user_name: str, password: str) -> User:
        req = build(lambda: pb.LoginRequest(user_name=user_name, password=password))
        return user_in(await self._call("login", req))

    async def change_money(self, cmd: ChangeMoney) -> None:
        req = build(lambda: pb.ChangeMoneyRequest(
            user_id=cmd.user_id, order_id=cmd.order_id, money=money_out(cmd.money), log_type=int(cmd.log_type),
        ))
        await self._call("change_money", req)

    async def audit_facts(self) -> UserFacts:
        return await self._facts(UserFacts)
