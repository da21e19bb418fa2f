"""The log service on the wire (proto/shop/v1/log.proto): reads only, all safe to repeat."""
from shop.infra.rpc.server import Service
from shop.rpc.v1 import log_pb2 as pb
from shop.rpc.v1 import log_pb2_grpc as pb_grpc
from shop.services.log.contracts import LogService

SERVICE = Service(
    "log", LogService, pb.DESCRIPTOR.services_by_name["LogService"], pb_grpc.LogServiceStub,
    pb_grpc.add_LogServiceServicer_to_server, retry={"pay_log", "audit_facts", "timeline"},
)
