"""The hardened front door, in process: no sandbox unless asked for, and without a payment
platform a clear 503; the headers every answer carries; the data dir's files are private."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import ADMIN
from tests.support import place, world


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.shop_settings(sandbox=False)
async def test_without_the_sandbox_there_is_no_sandbox_and_no_platform(shop, client):
    assert shop.sandbox is None
    for method, path in (("POST", "/sandbox/pay/1"), ("POST", "/sandbox/refund/1"), ("POST", "/sandbox/trades"),
                         ("POST", "/sandbox/notify/1/resend"), ("GET", "/sandbox/trades/1")):
        r = await client.request(method, path, json={"payId": "1", "amount": "1.00", "notifyUrl": "http://x/"})
        assert r.status_code == 404 and r.json()["code"] == "SHOP_NOT_FOUND", (path, r.text)
    # A payment needs a platform: none configured is a 503 that says so, not a crash.
    w = await world(shop, money="0.00", coupon=None, price="10.00")
    order = await shop.orders.confirm_order(place(w.user_id, w.goods_id, w.price))
    token = shop.tokens.issue(w.user_id)
    r = await client.post("/pay/createPayment", headers={"Authorization": f"Bearer {token}"},
                          json={"orderId": str(order.order_id), "payAmount": str(order.pay_amount)})
    assert r.status_code == 503 and r.json()["code"] == "SHOP_SERVICE_UNAVAILABLE", r.text
    assert "no payment platform is configured" in r.json()["message"]
    # Nothing was paid: the order is still waiting for its payment.
    assert (await shop.orders.find_order(order.order_id)).pay_status == 0


async def test_headers(client):
    r = await client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff" and "server" not in r.headers
    r = await client.get("/user/me")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="shop"'
    assert r.headers["x-content-type-options"] == "nosniff"
    r = await client.get("/user/me", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="shop", error="invalid_token"'
    r = await client.get("/admin/audit", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert (await client.get("/no-such-page")).headers["x-content-type-options"] == "nosniff"
    r = await client.post("/admin/users", headers={"Authorization": f"Bearer {ADMIN}"},
                          json={"userName": "hdr", "userPassword": "pw", "userMoney": "0"})
    assert r.status_code == 200
    r = await client.post("/user/login", json={"userName": "hdr", "userPassword": "pw"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"


async def test_the_data_dir_is_private(settings, shop, client):
    r = await client.post("/admin/users", headers={"Authorization": f"Bearer {ADMIN}"},
                          json={"userName": "files", "userPassword": "pw", "userMoney": "1.00"})
    assert r.status_code == 200
    d = settings.data_dir
    assert mode(d) == 0o700
    files = [p for p in d.iterdir() if p.is_file()]
    assert {"user.db", "sandbox.db", "broker.db", "sandbox_private.pem", "merchant.key"} <= {p.name for p in files}
    assert any(p.name.endswith("-wal") for p in files)
    assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o600) for p in files}


async def test_an_existing_data_dir_is_made_private(tmp_path, backend):
    """A data dir an older version left readable: its dir and files are fixed at the next start."""
    from shop.bootstrap import bootstrap
    from tests.conftest import make_settings

    d = tmp_path / "var"
    first = bootstrap(make_settings(d, token_secret=None))
    await first.start()
    await first.stop()
    d.chmod(0o755)
    for p in d.iterdir():
        p.chmod(0o644)
    second = bootstrap(make_settings(d, token_secret=None))
    await second.start()
    try:
        assert mode(d) == 0o700
        assert {p.name: oct(mode(p)) for p in d.iterdir()} == {p.name: oct(0o600) for p in d.iterdir()}
        assert (d / "token.secret").exists()
    finally:
        await second.stop()
