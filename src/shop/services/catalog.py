"""Every service's declarations, collected for bootstrap(): its tables, what it consumes, and its
gRPC service and client. Nothing here is wired; each service declares its own parts."""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from shop.infra.messaging import Binding, Consumes, topology
from shop.infra.rpc.client import GrpcClient
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
    client: type[GrpcClient]


PARTS: dict[str, Parts] = {
    "user": Parts(user_models.metadata, user_models.outbox, user_models.inbox, user_handlers.CONSUMES,
                  user_rpc.SERVICE, user_rpc.UserClient),
    "goods": Parts(goods_models.metadata, goods_models.outbox, goods_models.inbox, goods_handlers.CONSUMES,
                   goods_rpc.SERVICE, goods_rpc.GoodsClient),
    "coupon": Parts(coupon_models.metadata, coupon_models.outbox, coupon_models.inbox, coupon_handlers.CONSUMES,
                    coupon_rpc.SERVICE, coupon_rpc.CouponClient),
    "order": Parts(order_models.metadata, order_models.outbox, order_models.inbox, order_handlers.CONSUMES,
                   order_rpc.SERVICE, order_rpc.OrderClient),
    "pay": Parts(pay_models.metadata, pay_models.outbox, pay_models.inbox, pay_handlers.CONSUMES,
                 pay_rpc.SERVICE, pay_rpc.PayClient),
    "log": Parts(log_models.metadata, log_models.outbox, log_models.inbox, log_handlers.CONSUMES,
                 log_rpc.SERVICE, log_rpc.LogClient),
}

# Every consumer group of the shop, in the order the embedded broker enqueues a message's
# deliveries (so a cancel reaches goods, then coupon, then user, as the original's consumers did).
CONSUMERS: tuple[Consumes[object], ...] = tuple(
    c for s in ("goods", "coupon", "user", "order", "pay", "log") for c in PARTS[s].consumes
)
TOPOLOGY: list[Binding] = topology(CONSUMERS)
