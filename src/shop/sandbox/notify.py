"""The sandbox's way of reaching the shop: an HTTP POST of the signed notification."""
from __future__ import annotations

import httpx
import orjson

from shop.sandbox.platform import Send


def http_sender(client: httpx.AsyncClient, timeout_s: float = 5.0) -> Send:
    """Success is only what Alipay counts as one: HTTP 200 and a body saying so. A transport
    error propagates, and the sandbox logs it and retries like any other failure."""

    async def send(url: str, headers: dict[str, str], body: bytes) -> bool:
        # content=, not json=: the signature is over these exact bytes.
        r = await client.post(url, content=body, headers=headers, timeout=timeout_s)
        if r.status_code != 200:
            return False
        try:
            answer = orjson.loads(r.content)
        except orjson.JSONDecodeError:
            return False
        return isinstance(answer, dict) and answer.get("success") is True

    return send
