"""The sandbox platform as the other processes of the distributed shop reach it: over its HTTP API.

The same methods as `Sandbox` (the pay service's PaymentPlatform, and what the front door's
/sandbox routes call), so neither knows which it has. The platform's refusals come back as the
ShopErrors they were; a platform that cannot be reached is ServiceUnavailable.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from shop.common.errors import ServiceUnavailable, from_wire
from shop.common.money import fmt


class HttpPlatform:
    def __init__(self, base_url: str, merchant_key: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.merchant_key = merchant_key  # the front door's /sandbox proxy checks its callers' against it
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s,
                                       headers={"Authorization": f"Bearer {merchant_key}"})

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the payment platform at {self.base_url} failed: {exc!r}") from None
        try:
            answer = r.json()
            code, message = answer["code"], answer["message"]
        except (ValueError, KeyError, TypeError):
            raise ServiceUnavailable(f"the payment platform answered {r.status_code} without an envelope") from None
        if r.status_code == 200:
            return answer["data"]
        if r.status_code == 401:
            # The platform refused the shop's own credentials: a configuration fault for the
            # operator, not the customer's (whose request would otherwise come back as their 401).
            raise ServiceUnavailable("the payment platform refused the shop's merchant key (SHOP_MERCHANT_KEY)")
        raise from_wire(str(code), str(message), http_status=r.status_code, data=answer.get("data"))

    async def precreate(self, pay_id: int, amount: Decimal, notify_url: str) -> None:
        await self._call(
            "POST", "/sandbox/trades", {"payId": str(pay_id), "amount": fmt(amount), "notifyUrl": notify_url}
        )

    async def pay(self, pay_id: int) -> str:
        return (await self._call("POST", f"/sandbox/pay/{pay_id}"))["tradeNo"]

    async def resend(self, pay_id: int) -> None:
        await self._call("POST", f"/sandbox/notify/{pay_id}/resend")

    async def refund(self, pay_id: int) -> dict[str, str]:
        return await self._call("POST", f"/sandbox/refund/{pay_id}")

    async def trade(self, trade_no: str) -> dict[str, str]:
        return await self._call("GET", f"/sandbox/trades/{quote(trade_no, safe='')}")

    async def trade_by_pay_id(self, pay_id: int) -> dict[str, str]:
        return await self._call("GET", f"/sandbox/payments/{pay_id}")


NO_PLATFORM = ("no payment platform is configured: SHOP_SANDBOX_URL names the platform's address "
               "(SHOP_SANDBOX=1 runs the sandbox, for tests and demos)")


class NoPlatform:
    """The pay service's platform when none is configured (the sandbox off, no SHOP_SANDBOX_URL):
    creating a payment, or refunding one, answers 503 saying so, rather than failing on a
    connection to nowhere. A refund message keeps retrying, then waits dead for a replay once a
    platform is configured."""

    async def precreate(self, pay_id: int, amount: Decimal, notify_url: str) -> None:
        raise ServiceUnavailable(NO_PLATFORM)

    async def refund(self, pay_id: int) -> dict[str, str]:
        raise ServiceUnavailable(NO_PLATFORM)
