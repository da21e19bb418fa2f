"""User tokens (signed, expiring JWTs) and the admin token."""
from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path

import jwt

from shop.common.codes import ShopCode
from shop.common.errors import ShopError
from shop.infra.files import DIR_MODE, private_file, write_private


def load_or_create_secret(path: Path) -> str:
    """A secret generated at first start and kept in the data dir (0600; made so again if it is not)."""
    if path.exists():
        return private_file(path).read_text().strip()
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    write_private(path, value.encode())
    return value


class Tokens:
    def __init__(self, secret: str, ttl_s: int, cache_size: int = 10_000) -> None:
        self._secret = secret
        self._ttl_s = ttl_s
        # Verified tokens, so a busy client costs one signature check per token, not per request.
        self._verified: dict[str, tuple[int, int]] = {}
        self._cache_size = cache_size

    def issue(self, user_id: int) -> str:
        now = int(time.time())
        return jwt.encode({"sub": str(user_id), "iat": now, "exp": now + self._ttl_s}, self._secret, algorithm="HS256")

    def verify(self, token: str) -> int:
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
            user_id = int(claims["sub"])
        except (jwt.PyJWTError, ValueError):
            raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "invalid or expired token") from None
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = (user_id, int(claims["exp"]))
        return user_id


def check_secret(token: str, secret: str, what: str) -> None:
    """A bearer token that must be one shared secret (the admin token, the merchant key), compared in
    constant time so that the answer's timing tells nothing of how much of it matched."""
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, f"invalid {what}")


def bearer(header: str | None) -> str:
    if not header or not header.lower().startswith("bearer "):
        raise ShopError(ShopCode.SHOP_USER_NOT_AUTHORIZED, "missing bearer token")
    return header[7:].strip()
