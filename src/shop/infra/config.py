"""Configuration from the environment (pydantic-settings), one object passed to bootstrap()."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("user", "goods", "coupon", "order")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    data_dir: Path = Path("./var")
    admin_token: str | None = None
    token_secret: str | None = None  # signs user tokens; generated into the data dir when unset
    token_ttl_s: int = 24 * 3600
    # Argon2id cost (argon2-cffi's defaults, RFC 9106's low-memory profile); tests lower it.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65536, ge=64)
    faults: bool = False
    order_cancel_after_s: float = 30.0
    order_pay_timeout_s: float = 1800.0
    rpc_deadline_s: float = 5.0
    message_max_attempts: int = 5
    message_backoff_ms: int = 200
    message_backoff_cap_ms: int = 5000
    worker_id: int = Field(default=0, ge=0, le=31)
    datacenter_id: int = Field(default=0, ge=0, le=31)
    # One database URL per service; unset means a SQLite file per service under the data dir.
    user_db_url: str | None = None
    goods_db_url: str | None = None
    coupon_db_url: str | None = None
    order_db_url: str | None = None

    def db_url(self, service: str) -> str:
        url = getattr(self, f"{service}_db_url", None)
        if url:
            return url
        return f"sqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def broker_path(self) -> Path:
        return (self.data_dir / "broker.db").resolve()
