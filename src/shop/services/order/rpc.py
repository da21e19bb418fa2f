"""The order service on the wire (proto/shop/v1/orders.proto). Retry-safe: the reads only.
confirm_order makes a new order each time, and cancel and refund change an order's state (a repeat
after a lost reply would be refused): never repeated. Placing an order waits on the participants,
and a failure on its compensation: its callers give it a longer deadline."""
from shop.infra.rpc.server import Service
from shop.rpc.v1 import orders_pb2 as pb
from shop.rpc.v1 import orders_pb2_grpc as pb_grpc
from shop.services.order.contracts import OrderService

SERVICE = Service(
    "order", OrderService, pb.DESCRIPTOR.services_by_name["OrderService"], pb_grpc.OrderServiceStub,
    pb_grpc.add_OrderServiceServicer_to_server,
    retry={"find_order", "list_orders", "audit_facts", "timeline", "overview"},
)
