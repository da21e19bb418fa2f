"""The pay service's interface (the original's IPayService), its messages, and the platform port."""
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from shop.common.timeline import TimelineEvent
from shop.infra.db.scope import EVERYTHING, AuditScope
from shop.infra.messaging import Message

PAY_TOPIC = "pay"
TAG_PAID = "paid"


@dataclass(frozen=True, slots=True)
class Payment:
    pay_id: int
    order_id: int
    user_id: int
    pay_amount: Decimal
    is_paid: int
    trade_no: str | None
    paid_time: datetime | None
    is_refunded: int


@dataclass(frozen=True, slots=True)
class Notification:
    """The platform's asynchronous notification, as received: verified before it is parsed."""

    timestamp: str | None
    nonce: str | None
    signature: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class PaymentPaid:
    """Event: the platform says the customer paid. The order service decides what follows."""

    pay_id: int
    order_id: int
    pay_amount: Decimal
    trade_no: str

    def to_message(self) -> Message:
        return Message(PAY_TOPIC, TAG_PAID, str(self.order_id), {
            "payId": str(self.pay_id), "orderId": str(self.order_id), "payAmount": str(self.pay_amount),
            "tradeNo": self.trade_no,
        })

    @classmethod
    def from_message(cls, msg: Message) -> "PaymentPaid":
        b = msg.body
        return cls(int(b["payId"]), int(b["orderId"]), Decimal(b["payAmount"]), b["tradeNo"])


class PaymentPlatform(Protocol):
    """The third-party platform (the sandbox here): what the shop asks of it."""

    async def precreate(self, pay_id: int, amount: Decimal, notify_url: str) -> None: ...

    async def refund(self, pay_id: int) -> dict: ...


@dataclass(frozen=True, slots=True)
class PaymentState:
    """What the audit reads of a payment."""

    pay_id: int
    is_paid: int
    is_refunded: int


@dataclass(frozen=True)
class PayFacts:
    """The pay service's side of the audit: every payment, by order, and its messages not yet sent."""

    payments: dict[int, PaymentState]
    outbox_due: int
    sent: list[int] = field(default_factory=list)  # orders whose messages left since scope.sent_since_ms


class PayService(Protocol):
    async def create_payment(self, order_id: int, user_id: int, pay_amount: Decimal) -> Payment: ...

    async def find_payment(self, pay_id: int) -> Payment: ...

    async def notify(self, n: Notification) -> None: ...

    async def audit_facts(self, scope: AuditScope = EVERYTHING) -> PayFacts:
        """This service's facts about the scope's orders (or entities): indexed reads only."""
        ...

    async def timeline(self, order_id: int) -> list[TimelineEvent]:
        """Every fact this service holds about one order, for the operator."""
        ...
