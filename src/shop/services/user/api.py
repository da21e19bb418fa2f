"""REST: login, the caller's own user, and the operator's user endpoints."""
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from shop.common.clock import iso
from shop.common.money import fmt
from shop.infra.deps import AdminDep, TokensDep, UserIdDep, from_state
from shop.infra.openapi import IdOut, MoneyOut, Out, Result, Time, refusals
from shop.infra.web import Camel, Envelope, IdIn, MoneyIn, Text, ok
from shop.services.user.contracts import CreateUser, User, UserService

router = APIRouter()
UsersDep = Annotated[UserService, from_state("users")]


class LoginIn(Camel):
    user_name: Text = Field(min_length=1, max_length=255)
    user_password: Text = Field(min_length=1, max_length=1024)


class CreateUserIn(Camel):
    user_name: Text = Field(min_length=1, max_length=255)
    user_password: Text = Field(min_length=1, max_length=1024)
    user_mobile: Text | None = Field(default=None, max_length=255)
    user_money: MoneyIn


class UserOut(Out):
    user_id: IdOut
    user_name: str
    user_mobile: str | None
    user_score: int
    user_money: MoneyOut
    user_reg_time: Time


class LoginOut(Out):
    user_id: IdOut
    token: str


class UserIdOut(Out):
    user_id: IdOut


def user_json(u: User) -> dict[str, Any]:
    return {
        "userId": str(u.user_id), "userName": u.user_name, "userMobile": u.user_mobile, "userScore": u.user_score,
        "userMoney": fmt(u.user_money), "userRegTime": iso(u.user_reg_time),
    }


# 401: a wrong name or password; 429: too many of them for that name (API.md, Limits).
@router.post("/user/login", tags=["users"], response_model=Result[LoginOut], responses=refusals(401, 429))
async def login(body: LoginIn, users: UsersDep, tokens: TokensDep) -> Envelope:
    user = await users.login(body.user_name, body.user_password)
    answer = ok({"userId": str(user.user_id), "token": tokens.issue(user.user_id)})
    answer.headers["Cache-Control"] = "no-store"  # a bearer token: no cache, shared or private, keeps it
    return answer


@router.get("/user/me", tags=["users"], response_model=Result[UserOut], responses=refusals(404))
async def me(user_id: UserIdDep, users: UsersDep) -> Envelope:
    return ok(user_json(await users.find_user(user_id)))


@router.post("/admin/users", tags=["admin"], dependencies=[AdminDep], response_model=Result[UserIdOut],
             responses=refusals(409))
async def create_user(body: CreateUserIn, users: UsersDep) -> Envelope:
    user_id = await users.create_user(
        CreateUser(body.user_name, body.user_password, body.user_money, body.user_mobile)
    )
    return ok({"userId": str(user_id)})


@router.get("/admin/users/{user_id}", tags=["admin"], dependencies=[AdminDep], response_model=Result[UserOut])
async def get_user(user_id: IdIn, users: UsersDep) -> Envelope:
    return ok(user_json(await users.find_user(user_id)))
