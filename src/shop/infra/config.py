"""Configuration from the environment (pydantic-settings), one object passed to bootstrap()."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("user", "goods", "coupon", "order", "pay", "log")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    data_dir: Path = Path("./var")
    admin_token: str | None = None
    token_secret: str | None = None  # signs user tokens; generated into the data dir when unset
    token_ttl_s: int = 24 * 3600
    # Argon2id cost (argon2-cffi's defaults, RFC 9106's low-memory profile); tests lower it.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65536, ge=64)
    # Login throttling (API.md): after this many failed logins for one user name within the
    # window, further attempts for that name answer 429 until the window passes.
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: float = Field(default=300.0, gt=0)
    faults: bool = False
    log_format: Literal["text", "json"] = "text"  # json: one object a line, with service, orderId, traceId
    access_log: bool = False  # one line per HTTP request
    # How long the front door keeps an idle client connection open. Longer than any client's or
    # proxy's own idle limit (httpx and uvicorn both default to 5 s; load balancers to 60 s): at equal
    # limits the server may close a connection just as the client sends on it, and that request is
    # lost with no answer (seen as a ReadError in the infrastructure restart test).
    http_keep_alive_s: int = Field(default=75, ge=1)
    # Metrics and traces: "off" to run without either (to measure what they cost). On, every trace
    # is sampled, and exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (infra/tracing.py).
    telemetry: Literal["on", "off"] = "on"
    order_cancel_after_s: float = 30.0
    # How long the front door remembers a goods sold out (services/order/sold_out.py): at most 0.5 s,
    # so that stock that comes back is sold again within 1 s (a TTL, plus a probe's hold of a TTL at most).
    sold_out_ttl_s: float = Field(default=0.5, gt=0, le=0.5)
    # Admission control at the front door (infra/admission.py) for order placement: at most
    # admission_active orders in progress, fewer while they take over admission_target_s (AIMD),
    # at most admission_queue waiting (oldest first), none waiting over admission_wait_s; the rest
    # are refused with a 503 and Retry-After. Measured with bench/overload.py (wrk -c512) on the
    # 2-core machine: with a fixed number in progress, p99 stayed under 1 s with 16-24 and 0.3-0.4 s
    # of wait and went over it with 32-128 (an order's own time grows with the orders beside it) or
    # 0.5 s, and on a busier machine 24 was too many for the distributed shop (1.3 s): hence the
    # adaptive limit. The queue outnumbers the connections one front door expects: a client told
    # 503 at once comes straight back (wrk does), and a queue of 64 or 128 turned wrk's 512
    # connections into a storm of refusals that took the CPU (12-19 orders/s, p99 6 s); refused
    # after its wait, a client comes back at most once per wait. admission_active 0: off.
    admission_active: int = Field(default=64, ge=0)
    admission_queue: int = Field(default=1024, ge=0)
    admission_wait_s: float = Field(default=0.3, ge=0)
    # ... and admission_active is the most: fewer while the orders take longer than this (AIMD),
    # down to admission_active_least.
    admission_target_s: float = Field(default=0.3, gt=0)
    admission_active_least: int = Field(default=8, ge=1)
    order_pay_timeout_s: float = 1800.0
    rpc_deadline_s: float = 5.0
    # How many gRPC calls a process has out to one service before the calls it makes meanwhile go
    # together, several in one gRPC call (infra/rpc/batch.py). 0: every call alone.
    rpc_in_flight: int = Field(default=2, ge=0)
    # ... counting a call for this long at most: a longer one (a slow read, a hung provider, a call
    # whose answer waits for another call of ours) keeps nobody waiting past it.
    rpc_hold_ms: float = Field(default=20.0, gt=0)
    message_max_attempts: int = 5
    message_retention_days: float = Field(default=7.0, gt=0)  # sent messages kept for the timelines
    message_backoff_ms: int = 200
    message_backoff_cap_ms: int = 5000
    worker_id: int = Field(default=0, ge=0, le=31)
    datacenter_id: int = Field(default=0, ge=0, le=31)
    # The broker: unset, the embedded one (a SQLite file in the data dir); an amqp:// URL, RabbitMQ.
    broker_url: str | None = None
    broker_prefix: str = "shop"  # names this shop's exchanges and queues on a shared broker
    # The distributed mode (`shop serve`, `shop cluster up`): the Zookeeper registry ("host:port,...";
    # unset: the embedded mode, every service in one process), the root of its nodes (Dubbo's), the
    # address this process's gRPC server listens on (port 0: any free one; it registers the one it
    # got) and the host it registers (the one others reach it by), and where the sandbox platform is.
    registry_url: str | None = None
    registry_root: str = "/dubbo"
    # "user:password": the shop authenticates to Zookeeper with it (digest) and creates its nodes
    # readable and writable by that user only. Unset: open nodes, as a local Zookeeper has them.
    registry_auth: str | None = None
    registry_session_timeout_s: float = Field(default=6.0, ge=1.0)
    rpc_host: str = "127.0.0.1"
    rpc_port: int = Field(default=0, ge=0, le=65535)
    # A gRPC-only process (a service role) serves GET /metrics on this port; HTTP roles on their own.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    advertise_host: str | None = None
    # Calls between processes are mutual TLS (infra/tls.py): a process presents its role's
    # certificate and accepts only peers the shop's CA signed. tls_dir: where `shop prepare` makes
    # them (default <data_dir>/tls); tls_ca/tls_cert/tls_key: this process's own files instead.
    # rpc_tls "off" exists only to measure what TLS costs: nothing between processes is then
    # authenticated, so a deployment never runs with it.
    rpc_tls: Literal["on", "off"] = "on"
    tls_dir: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The payment platform: SHOP_SANDBOX=1 (or --demo) runs the sandbox stand-in (in `shop run`,
    # mounted under /sandbox; in the distributed mode, the sandbox role and the front door's proxy
    # to it); off, /sandbox is 404 everywhere. sandbox_url: the platform the pay service calls when
    # it does not run in this process (unset with the sandbox off: no platform, creating a payment
    # is a 503). merchant_key: the shop's credentials at the platform (generated into the data dir
    # as merchant.key when unset).
    sandbox: bool = False
    sandbox_url: str | None = None
    merchant_key: str | None = None
    # One database URL per service; unset means a SQLite file per service under the data dir.
    user_db_url: str | None = None
    goods_db_url: str | None = None
    coupon_db_url: str | None = None
    order_db_url: str | None = None
    pay_db_url: str | None = None
    log_db_url: str | None = None
    # How the embedded mode's SQLite files reach the disk (infra/db/sqlite.py): "barrier" (a commit
    # is durable before anything acts on it, fsyncs shared), "full" (each commit syncs inline) or
    # "normal" (NOT power-safe: a power cut can tear an order across files; for measurements).
    sqlite_durability: Literal["barrier", "full", "normal"] = "barrier"
    # Payments: where the platform sends its notifications, how old a signed one may be, the
    # platform's public key (PEM file; default: the sandbox's, generated in the data dir), and
    # the sandbox's retry schedule for notifications (Alipay's: 4m, 10m, 10m, 1h, 2h, 6h, 15h).
    pay_notify_url: str = "http://127.0.0.1:8000/pay/callbackPayment"
    pay_notify_window_s: float = 300.0
    pay_platform_public_key: Path | None = None
    sandbox_notify_schedule_s: str = "240,600,600,3600,7200,21600,54000"

    def notify_schedule(self) -> list[float]:
        return [float(x) for x in self.sandbox_notify_schedule_s.split(",") if x.strip()]

    def db_url(self, service: str) -> str:
        url = getattr(self, f"{service}_db_url", None)
        if url:
            return url
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def broker_path(self) -> Path:
        return (self.data_dir / "broker.db").resolve()
