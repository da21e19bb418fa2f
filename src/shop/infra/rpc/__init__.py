"""RPC between services, transport-neutral above this package: in process (local.py) or over gRPC
(server.py, client.py, with errors.py and wire.py), plus every process's operator service (admin.py).
Each service declares its own gRPC method table, converters and client in its package's rpc.py."""
