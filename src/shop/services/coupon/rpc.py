"""The coupon service on the wire (proto/shop/v1/participants.proto). Retry-safe: the reads, and
use_coupon, whose ledger row is keyed by the order. create_coupon makes a new id: never repeated.
Only the order service uses a coupon (its saga): no other process's certificate may call use_coupon."""
from shop.infra.rpc.server import Service
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.coupon.contracts import CouponService

SERVICE = Service(
    "coupon", CouponService, pb.DESCRIPTOR.services_by_name["CouponService"], pb_grpc.CouponServiceStub,
    pb_grpc.add_CouponServiceServicer_to_server, retry={"find_coupon", "use_coupon", "audit_facts", "timeline"},
    callers={"use_coupon": ("order",)},
)
