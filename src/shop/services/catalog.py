"""Every service's declarations, collected for bootstrap(): its tables, what it consumes, and its
gRPC service and client. Nothing here is wired; each service declares its own parts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa

from shop.infra.messaging import Binding, Consumes, topology
from shop.infra.migrate import upgrade
from shop.infra.rpc.server import Service
from shop.services.coupon import handlers as coupon_handlers
from shop.services.coupon import models as coupon_models
from shop.services.coupon import rpc as coupon_rpc
from shop.services.goods import handlers as goods_handlers
from shop.services.goods import models as goods_models
from shop.services.goods import rpc as goods_rpc
from shop.services.log import handlers as log_handlers
from shop.services.log import models as log_models
from shop.services.log import rpc as log_rpc
from shop.services.order import handlers as order_handlers
from shop.services.order import models as order_models
from shop.services.order import participants
from shop.services.order import rpc as order_rpc
from shop.services.pay import handlers as pay_handlers
from shop.services.pay import models as pay_models
from shop.services.pay import rpc as pay_rpc
from shop.services.user import handlers as user_handlers
from shop.services.user import models as user_models
from shop.services.user import rpc as user_rpc


@dataclass(frozen=True)
class Parts:
    metadata: sa.MetaData  # its tables, message tables included
    outbox: sa.Table
    inbox: sa.Table
    consumes: tuple[Consumes[object], ...]
    rpc: Service

    migrations: Path  # its Alembic history

    @classmethod
    def of(cls, models: ModuleType, handlers: ModuleType, rpc: ModuleType) -> Parts:
        migrations = Path(models.__file__ or "").parent / "migrations"
        return cls(models.metadata, models.outbox, models.inbox, handlers.CONSUMES, rpc.SERVICE, migrations)


PARTS: dict[str, Parts] = {
    "user": Parts.of(user_models, user_handlers, user_rpc),
    "goods": Parts.of(goods_models, goods_handlers, goods_rpc),
    "coupon": Parts.of(coupon_models, coupon_handlers, coupon_rpc),
    "order": Parts.of(order_models, order_handlers, order_rpc),
    "pay": Parts.of(pay_models, pay_handlers, pay_rpc),
    "log": Parts.of(log_models, log_handlers, log_rpc),
}

# Every consumer group of the shop, in the order the embedded broker enqueues a message's
# deliveries (so a cancel reaches goods, then coupon, then user, as the original's consumers did).
CONSUMERS: tuple[Consumes[object], ...] = tuple(
    c for s in ("goods", "coupon", "user", "order", "pay", "log") for c in PARTS[s].consumes
)
TOPOLOGY: list[Binding] = topology(CONSUMERS)

# Every named point a fault can be armed at (POST /admin/faults), for the console to offer: the
# saga's, the payment's, and each consumer's.
FAULT_POINTS: tuple[str, ...] = (
    *dict.fromkeys(p for points in (participants.FAULTS_BEFORE, participants.FAULTS_AFTER)
                   for step in points.values() for p in step),
    pay_handlers.AFTER_MARK_PAID,
    *(p for c in CONSUMERS for p in c.fault_points),
)


def migrate_service(service: str, url: str) -> None:
    """Bring the service's database at `url` to the head of its history."""
    parts = PARTS[service]
    upgrade(url, parts.migrations, parts.metadata)
