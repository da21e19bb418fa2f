"""The goods service on the wire (proto/shop/v1/participants.proto). Retry-safe: the reads, and
reduce_stock, whose ledger row is keyed by the order. create_goods makes a new id, and a restock
without a key is a new adjustment: restock is never repeated here (one with a key may be repeated by
its operator, whose Idempotency-Key makes that safe). Only the order service takes stock (its saga): no other process's
certificate may call reduce_stock; only the processes serving /admin (and the operator's tools) restock."""
from shop.infra.rpc.admin import ADMIN_CALLERS
from shop.infra.rpc.server import Service
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.goods.contracts import GoodsService

SERVICE = Service(
    "goods", GoodsService, pb.DESCRIPTOR.services_by_name["GoodsService"], pb_grpc.GoodsServiceStub,
    pb_grpc.add_GoodsServiceServicer_to_server, retry={"find_goods", "reduce_stock", "audit_facts", "timeline"},
    callers={"reduce_stock": ("order",), "restock": ADMIN_CALLERS},
)
