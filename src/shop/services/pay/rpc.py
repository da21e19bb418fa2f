"""The pay service on the wire (proto/shop/v1/orders.proto). Retry-safe: the reads, and notify,
whose marking of the payment is a compare-and-set. create_payment asks the platform each time:
never repeated."""
from shop.infra.rpc.server import Service
from shop.rpc.v1 import orders_pb2 as pb
from shop.rpc.v1 import orders_pb2_grpc as pb_grpc
from shop.services.pay.contracts import PayService

SERVICE = Service(
    "pay", PayService, pb.DESCRIPTOR.services_by_name["PayService"], pb_grpc.PayServiceStub,
    pb_grpc.add_PayServiceServicer_to_server, retry={"find_payment", "notify", "audit_facts", "timeline"},
)
