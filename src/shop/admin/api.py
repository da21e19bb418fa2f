"""REST: the operator's audit, dead messages and fault injection."""
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AfterValidator, Field, StrictInt

from shop.admin.operator import Operator
from shop.common.clock import iso
from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.common.ids import parse_id
from shop.infra.deps import AdminDep, from_state
from shop.infra.faults import MAX_DELAY_MS, MAX_TIMES
from shop.infra.openapi import MESSAGE_ID_PATTERN, IdOut, Out, Pattern, Result, Time
from shop.infra.web import Camel, Envelope, IdIn, Text, ok, valid
from shop.services.catalog import FAULT_POINTS
from shop.services.order.contracts import MAX_OVERVIEW_MINUTES

router = APIRouter(tags=["admin"], dependencies=[AdminDep])
OperatorDep = Annotated[Operator, from_state("operator")]


class FaultIn(Camel):
    point: Text = Field(min_length=1, max_length=100)
    action: Literal["error", "crash", "delay"]
    times: StrictInt | None = Field(default=None, ge=1, le=MAX_TIMES)
    delay_ms: StrictInt = Field(default=0, ge=0, le=MAX_DELAY_MS)


class AuditOut(Out):
    consistent: bool
    violations: list[Any]
    pending: int


class EventOut(Out):
    at: Time
    service: str
    kind: str
    detail: Any


class TimelineOut(Out):
    order_id: IdOut
    events: list[EventOut]


class ReplayOut(Out):
    id: str
    state: Literal["ready"]


# The operator's views below that only the console reads are documented loosely (an object):
# their fields follow the console, not a client contract.
@router.get("/admin/audit", response_model=Result[AuditOut])
async def audit(operator: OperatorDep) -> Envelope:
    return ok((await operator.audit()).json())


@router.get("/admin/overview", response_model=Result[dict[str, Any]])
async def overview(
    operator: OperatorDep,
    minutes: Annotated[int, Query(ge=1, le=MAX_OVERVIEW_MINUTES, description="the window, in minutes")] = 60,
) -> Envelope:
    """Orders per minute by outcome, compensations, pending work and dead messages, for the console."""
    return ok(await operator.overview(minutes))


@router.get("/admin/audit/recount", response_model=Result[dict[str, Any] | None])
async def last_recount(operator: OperatorDep) -> Envelope:
    """The last recount started through this process: running (with its progress), done (with what
    it found) or failed; null when none was started."""
    return ok(operator.last_recount())


@router.post("/admin/audit/recount", response_model=Result[dict[str, Any]])
async def recount(operator: OperatorDep) -> Envelope:
    """Start a full recount (every order, every goods' stock and user's balance and points against
    their sums) in the background; it answers at once, and GET /admin/audit shows its progress and
    result. A recount already running is not started twice."""
    return ok(operator.recount())


@router.get("/admin/orders/{order_id}/timeline", response_model=Result[TimelineOut])
async def timeline(order_id: IdIn, operator: OperatorDep) -> Envelope:
    events = await operator.timeline(order_id)
    return ok({"orderId": str(order_id), "events": [
        {"at": iso(e.at), "service": e.service, "kind": e.kind, "detail": e.detail} for e in events]})


@router.get("/admin/messages", response_model=Result[list[dict[str, Any]]])
async def messages(operator: OperatorDep, state: Literal["dead", "retrying"] = Query("dead")) -> Envelope:
    """Messages parked dead after their retries ran out, or waiting in back-off for their next try."""
    return ok(await (operator.dead() if state == "dead" else operator.retrying()))


def _message_id(v: str) -> str:
    # An id as GET /admin/messages lists it: a number on the embedded broker, group:msgId on RabbitMQ.
    # One that is all digits is a number, so it must be an id (common/ids.py): 2^64 is a 422, not a
    # value the database cannot hold. Any other text is looked up and not found (a 404): no broker
    # lists it, and neither compares it with more than its own ids.
    return str(parse_id(v, "message id")) if v.isascii() and v.isdigit() else v


MessageId = Annotated[str, AfterValidator(valid(_message_id)), Pattern(MESSAGE_ID_PATTERN)]


@router.post("/admin/messages/{message_id}/replay", response_model=Result[ReplayOut])
async def replay(message_id: MessageId, operator: OperatorDep) -> Envelope:
    if len(message_id) > 200 or not await operator.replay(message_id):
        raise ShopError(ShopCode.SHOP_MESSAGE_NO_EXIST, "no dead or waiting message with that id")
    return ok({"id": message_id, "state": "ready"})


def faults_router() -> APIRouter:
    """Mounted only when SHOP_FAULTS=1: otherwise the path does not exist (404)."""
    r = APIRouter(tags=["admin"], dependencies=[AdminDep])

    @r.post("/admin/faults", response_model=Result[dict[str, Any]])
    async def arm(body: FaultIn, operator: OperatorDep) -> Envelope:
        # armed: the other processes' addresses (the distributed mode); skipped: those that refused
        # the connection (just crashed, still registered), each with the reason.
        sent = await operator.arm_fault(body.point, body.action, body.times, body.delay_ms)
        return ok({"point": body.point, "action": body.action, "times": body.times, "delayMs": body.delay_ms,
                   "armed": sent.reached, "skipped": sent.skipped})

    @r.get("/admin/faults", response_model=Result[dict[str, Any]])
    async def armed(operator: OperatorDep) -> Envelope:
        """The points a fault can be armed at, and the faults armed through this process and not yet
        spent here. The console also asks to learn whether fault injection is on (404 when off)."""
        return ok({"points": list(FAULT_POINTS), "armed": operator.armed_faults()})

    @r.delete("/admin/faults", response_model=Result[None])
    async def clear(operator: OperatorDep) -> Envelope:
        sent = await operator.clear_faults()
        return ok({"cleared": sent.reached, "skipped": sent.skipped})

    return r
