"""The user service on the wire (proto/shop/v1/participants.proto). Retry-safe: the reads, login,
and change_money, whose ledger row is keyed by the order, so a repeat finds the first one's row.
(A login retried after its first try reached the database counts twice toward its user name's
throttle: the safe side, and only when a call failed without an answer.)
create_user makes a new id each time: never repeated.
Only the order service moves a balance (its saga; refunds travel as messages): no other process's
certificate may call change_money."""
from shop.infra.rpc.server import Service
from shop.rpc.v1 import participants_pb2 as pb
from shop.rpc.v1 import participants_pb2_grpc as pb_grpc
from shop.services.user.contracts import UserService

SERVICE = Service(
    "user", UserService, pb.DESCRIPTOR.services_by_name["UserService"], pb_grpc.UserServiceStub,
    pb_grpc.add_UserServiceServicer_to_server, retry={"find_user", "login", "change_money", "audit_facts", "timeline"},
    callers={"change_money": ("order",)},
)
