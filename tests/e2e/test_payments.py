"""Payments over HTTP: the sandbox pays, the signed notification is answered at once, and the
order, points and payment log follow exactly once; forged, stale and wrong notifications change
nothing; timeouts, the owner's cancel, refunds and late payments settle by compare-and-set."""
import asyncio
import os
import time

import orjson
import pytest

from shop.bootstrap import bootstrap
from shop.infra.signing import Signer
from tests.conftest import ADMIN, make_settings
from tests.support import Api, answered, order_json, quiet_api, until


async def _buyer(api: Api, money: str = "100.00", stock: int = 10, price: str = "5000.00"):
    name = f"payer-{os.urandom(4).hex()}"
    uid = await api.create_user(name, money)
    auth = await api.login(name)
    gid = await api.create_goods(price, stock)
    cid = await api.create_coupon(uid, "100.00")
    return uid, auth, gid, cid


async def _order(api: Api, money: str = "100.00"):
    uid, auth, gid, cid = await _buyer(api, money)
    r = await api.confirm(auth, order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))
    assert r.status_code == 200, r.text
    return uid, auth, gid, cid, r.json()["data"]


async def _payment(api: Api, auth, order) -> dict:
    r = await api.c.post("/pay/createPayment", json={"orderId": order["orderId"], "payAmount": order["payAmount"]},
                         headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _signed(shop, body: dict, *, ts: int | None = None, key=None) -> tuple[bytes, dict]:
    raw = orjson.dumps(body)
    signer = key or Signer((shop.settings.data_dir / "sandbox_private.pem").read_bytes())
    timestamp, nonce = str(ts if ts is not None else int(time.time())), os.urandom(8).hex()
    return raw, {"X-Pay-Timestamp": timestamp, "X-Pay-Nonce": nonce,
                 "X-Pay-Signature": signer.sign(timestamp, nonce, raw), "Content-Type": "application/json"}


def _note(payment: dict, **over) -> dict:
    body = {"payId": payment["payId"], "isPaid": 2, "payAmount": payment["payAmount"],
            "tradeNo": "T-" + os.urandom(4).hex(), "notifyId": os.urandom(4).hex()}
    body.update(over)
    return body


@pytest.fixture
def api(client):
    return Api(client, ADMIN)


async def test_the_whole_happy_path_through_the_sandbox(api, shop):
    uid, auth, gid, cid, order = await _order(api)
    payment = await _payment(api, auth, order)
    assert payment["payAmount"] == "4800.00" and payment["isPaid"] == 1 and payment["payUrl"]
    again = await _payment(api, auth, order)
    assert again["payId"] == payment["payId"]  # the open payment, not a second one
    r = await api.c.post(f"/sandbox/pay/{payment['payId']}")
    assert r.status_code == 200, r.text
    trade_no = r.json()["data"]["tradeNo"]

    async def paid():
        o = await api.get(f"/admin/orders/{order['orderId']}")
        return o if o["payStatus"] == 2 else None
    o = await until(paid)
    assert o and o["payTime"] and o["orderStatus"] == 1
    report = await quiet_api(api)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    user = await api.get(f"/admin/users/{uid}")
    assert user["userScore"] == 4800
    assert len(await api.get(f"/admin/paylog?orderId={order['orderId']}")) == 1
    p = await api.get(f"/admin/payments/{payment['payId']}")
    assert p["isPaid"] == 2 and p["tradeNo"] == trade_no
    own = await api.c.get(f"/pay/{payment['payId']}", headers=auth)
    assert own.status_code == 200 and own.json()["data"]["isPaid"] == 2
    trade = await api.get(f"/sandbox/trades/{trade_no}")
    assert trade["state"] == "PAID" and trade["amount"] == "4800.00"
    # A resend (signed afresh) is answered and changes nothing.
    first = await until(lambda: answered(shop, payment["payId"]))
    assert first, "the platform never saw its notification answered"
    assert (await api.c.post(f"/sandbox/notify/{payment['payId']}/resend")).status_code == 200
    assert await until(lambda: answered(shop, payment["payId"], other_than=first)), "the resend was never answered"
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}
    assert (await api.get(f"/admin/users/{uid}"))["userScore"] == 4800
    assert len(await api.get(f"/admin/paylog?orderId={order['orderId']}")) == 1


async def test_the_answer_does_not_wait_for_the_fan_out(api, shop):
    uid, auth, gid, cid, order = await _order(api)
    payment = await _payment(api, auth, order)
    armed = await api.c.post("/admin/faults", headers=api.admin,
                             json={"point": "order.on_pay_paid", "action": "delay", "delayMs": 1500, "times": 1})
    assert armed.status_code == 200, armed.text
    raw, headers = _signed(shop, _note(payment))
    t = time.monotonic()
    r = await api.c.post("/pay/callbackPayment", content=raw, headers=headers)
    took = time.monotonic() - t
    assert r.status_code == 200 and r.json()["success"] is True
    assert took < 0.5
    assert (await api.get(f"/admin/orders/{order['orderId']}"))["payStatus"] == 0  # not yet
    assert (await api.get(f"/admin/payments/{payment['payId']}"))["isPaid"] == 2

    async def paid():
        return (await api.get(f"/admin/orders/{order['orderId']}"))["payStatus"] == 2
    assert await until(paid)
    assert (await quiet_api(api))["consistent"]
    assert (await api.get(f"/admin/users/{uid}"))["userScore"] == 4800


async def test_forged_stale_and_wrong_notifications_change_nothing(api, shop, tmp_path):
    uid, auth, gid, cid, order = await _order(api)
    payment = await _payment(api, auth, order)
    body = _note(payment)
    raw, headers = _signed(shop, body)
    cases = [
        ({"Content-Type": "application/json"}, raw, 401),  # unsigned
        ({**headers, "X-Pay-Signature": headers["X-Pay-Signature"][:-8] + "AAAAAAA="}, raw, 401),  # bad signature
        (headers, orjson.dumps({**body, "payAmount": "1.00"}), 401),  # body changed after signing
        ({**headers, "X-Pay-Signature": "not base64!"}, raw, 401),
    ]
    from shop.infra.signing import load_or_create_key_pair
    other_private, _ = load_or_create_key_pair(tmp_path / "other")
    cases.append((_signed(shop, body, key=Signer(other_private))[1], raw, 401))  # someone else's key
    stale_raw, stale_headers = _signed(shop, body, ts=int(time.time()) - 3600)
    cases.append((stale_headers, stale_raw, 401))
    wrong_raw, wrong_headers = _signed(shop, _note(payment, payAmount="4799.99"))
    cases.append((wrong_headers, wrong_raw, 422))
    unknown_raw, unknown_headers = _signed(shop, _note(payment, payId="123456789"))
    cases.append((unknown_headers, unknown_raw, 404))
    junk_raw, junk_headers = _signed(shop, {"hello": "world"})
    cases.append((junk_headers, junk_raw, 422))
    for hdrs, content, status in cases:
        r = await api.c.post("/pay/callbackPayment", content=content, headers=hdrs)
        assert r.status_code == status, (hdrs, content, r.text)
        assert r.json()["success"] is False
    assert await quiet_api(api) == {"consistent": True, "violations": [], "pending": 0}
    assert (await api.get(f"/admin/payments/{payment['payId']}"))["isPaid"] == 1
    o = await api.get(f"/admin/orders/{order['orderId']}")
    assert o["payStatus"] == 0 and o["orderStatus"] == 1
    assert (await api.get(f"/admin/users/{uid}"))["userScore"] == 0
    assert await api.get(f"/admin/paylog?orderId={order['orderId']}") == []


async def test_ten_concurrent_duplicate_notifications_are_processed_once(api, shop):
    uid, auth, gid, cid, order = await _order(api)
    payment = await _payment(api, auth, order)
    body = _note(payment)
    signed = [_signed(shop, {**body, "notifyId": os.urandom(4).hex()}) for _ in range(10)]
    rs = await asyncio.gather(*(api.c.post("/pay/callbackPayment", content=raw, headers=h) for raw, h in signed))
    assert all(r.status_code == 200 and r.json()["success"] for r in rs)
    report = await quiet_api(api)
    assert report["consistent"], report
    assert (await api.get(f"/admin/users/{uid}"))["userScore"] == 4800
    assert len(await api.get(f"/admin/paylog?orderId={order['orderId']}")) == 1


async def test_create_payment_refusals(api, shop):
    uid, auth, gid, cid, order = await _order(api)
    other = await api.login(await _named(api))
    bad = [
        ({"orderId": order["orderId"], "payAmount": "4800.01"}, auth, 422, "SHOP_PAYMENT_AMOUNT_INVALID"),
        ({"orderId": order["orderId"], "payAmount": "4800.00"}, other, 403, "SHOP_USER_NOT_AUTHORIZED"),
        ({"orderId": "999", "payAmount": "4800.00"}, auth, 404, "SHOP_ORDER_NO_EXIST"),
        ({"orderId": order["orderId"], "payAmount": "abc"}, auth, 422, "SHOP_REQUEST_PARAMETER_VALID"),
        ({"orderId": order["orderId"], "payAmount": "4800.00"}, {}, 401, "SHOP_USER_NOT_AUTHORIZED"),
    ]
    for body, headers, status, code in bad:
        r = await api.c.post("/pay/createPayment", json=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
    # Paid: no second payment.
    payment = await _payment(api, auth, order)
    await api.c.post(f"/sandbox/pay/{payment['payId']}")
    async def paid():
        return (await api.get(f"/admin/orders/{order['orderId']}"))["payStatus"] == 2
    assert await until(paid)
    r = await api.c.post("/pay/createPayment", json={"orderId": order["orderId"], "payAmount": "4800.00"}, headers=auth)
    assert (r.status_code, r.json()["code"]) == (409, "SHOP_ORDER_PAY_STATUS_IS_PAY")
    r = await api.c.get(f"/pay/{payment['payId']}", headers=other)
    assert r.status_code == 403


async def _named(api: Api) -> str:
    name = f"other-{os.urandom(4).hex()}"
    await api.create_user(name, "10.00")
    return name


async def test_the_owner_cancels_a_confirmed_unpaid_order(api, shop):
    uid, auth, gid, cid, order = await _order(api)
    other = await api.login(await _named(api))
    r = await api.c.post(f"/order/{order['orderId']}/cancel", headers=other)
    assert r.status_code == 403
    r = await api.c.post(f"/order/{order['orderId']}/cancel", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["orderStatus"] == 2
    # Already undone when the answer comes.
    assert (await api.get(f"/admin/goods/{gid}"))["goodsNumber"] == 10
    assert (await api.get(f"/admin/users/{uid}"))["userMoney"] == "100.00"
    assert (await api.get(f"/admin/coupons/{cid}"))["isUsed"] == 0
    r = await api.c.post(f"/order/{order['orderId']}/cancel", headers=auth)
    assert (r.status_code, r.json()["code"]) == (409, "SHOP_ORDER_STATUS_INVALID")
    r = await api.c.post("/pay/createPayment", json={"orderId": order["orderId"], "payAmount": "4800.00"}, headers=auth)
    assert (r.status_code, r.json()["code"]) == (409, "SHOP_ORDER_STATUS_INVALID")
    assert (await quiet_api(api)) == {"consistent": True, "violations": [], "pending": 0}


async def test_a_paid_order_cannot_be_cancelled_but_can_be_refunded(api, shop):
    uid, auth, gid, cid, order = await _order(api)
    payment = await _payment(api, auth, order)
    trade_no = (await api.c.post(f"/sandbox/pay/{payment['payId']}")).json()["data"]["tradeNo"]
    async def paid():
        return (await api.get(f"/admin/orders/{order['orderId']}"))["payStatus"] == 2
    assert await until(paid)
    await quiet_api(api)
    assert (await api.get(f"/admin/users/{uid}"))["userScore"] == 4800
    r = await api.c.post(f"/order/{order['orderId']}/cancel", headers=auth)
    assert (r.status_code, r.json()["code"]) == (409, "SHOP_ORDER_PAY_STATUS_IS_PAY")
    r = await api.c.post(f"/order/{order['orderId']}/refund", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["orderStatus"] == 4
    report = await quiet_api(api)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert (await api.get(f"/admin/goods/{gid}"))["goodsNumber"] == 10
    user = await api.get(f"/admin/users/{uid}")
    assert (user["userMoney"], user["userScore"]) == ("100.00", 0)
    assert (await api.get(f"/admin/coupons/{cid}"))["isUsed"] == 0
    assert (await api.get(f"/admin/payments/{payment['payId']}"))["isRefunded"] == 1
    assert (await api.get(f"/sandbox/trades/{trade_no}"))["state"] == "REFUNDED"
    r = await api.c.post(f"/order/{order['orderId']}/refund", headers=auth)
    assert (r.status_code, r.json()["code"]) == (409, "SHOP_ORDER_STATUS_INVALID")


async def test_a_late_payment_is_refunded_and_earns_nothing(api, shop):
    uid, auth, gid, cid, order = await _order(api)
    payment = await _payment(api, auth, order)
    assert (await api.c.post(f"/order/{order['orderId']}/cancel", headers=auth)).status_code == 200
    r = await api.c.post(f"/sandbox/pay/{payment['payId']}")  # the customer pays anyway
    trade_no = r.json()["data"]["tradeNo"]

    async def refunded():
        return (await api.get(f"/sandbox/trades/{trade_no}"))["state"] == "REFUNDED"
    assert await until(refunded)
    report = await quiet_api(api)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    o = await api.get(f"/admin/orders/{order['orderId']}")
    assert (o["orderStatus"], o["payStatus"]) == (2, 0)
    user = await api.get(f"/admin/users/{uid}")
    assert (user["userMoney"], user["userScore"]) == ("100.00", 0)
    assert (await api.get(f"/admin/payments/{payment['payId']}"))["isRefunded"] == 1
    assert await api.get(f"/admin/paylog?orderId={order['orderId']}") == []


async def test_an_unpaid_order_is_cancelled_at_its_payment_timeout(tmp_path):
    import httpx

    from shop.app import create_app
    from shop.sandbox.notify import http_sender

    shop = bootstrap(make_settings(tmp_path, order_pay_timeout_s=1.0))
    await shop.start()
    try:
        app = create_app(shop)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as c:
            shop.sandbox.use_sender(http_sender(c))
            api = Api(c, ADMIN)
            uid, auth, gid, cid, order = await _order(api)
            assert (await api.get("/admin/audit"))["pending"] == 0  # a future deadline is not work in flight
            start = time.monotonic()

            async def cancelled():
                return (await api.get(f"/admin/orders/{order['orderId']}"))["orderStatus"] == 2
            assert await until(cancelled, 6)
            assert time.monotonic() - start < 1.0 + 2.5
            report = await quiet_api(api)
            assert report == {"consistent": True, "violations": [], "pending": 0}
            assert (await api.get(f"/admin/goods/{gid}"))["goodsNumber"] == 10
            assert (await api.get(f"/admin/users/{uid}"))["userMoney"] == "100.00"
            assert (await api.get(f"/admin/coupons/{cid}"))["isUsed"] == 0
    finally:
        await shop.stop()


async def test_the_platforms_refusals_reach_the_customer_as_they_were(api, shop):
    # In the distributed shop these cross from the sandbox process through the front door.
    r = await api.c.post("/sandbox/pay/123456789")
    assert r.status_code == 404 and r.json()["code"] == "SHOP_PAYMENT_NOT_FOUND", r.text
    r = await api.c.get("/sandbox/trades/no-such-trade")
    assert r.status_code == 404 and r.json()["code"] == "SHOP_PAYMENT_NOT_FOUND", r.text
    uid, auth, gid, cid, order = await _order(api)
    payment = await _payment(api, auth, order)
    r = await api.c.post(f"/sandbox/notify/{payment['payId']}/resend")  # not paid yet: nothing to resend
    assert r.status_code == 409 and r.json()["code"] == "SHOP_FAIL" and "not PAID" in r.json()["message"], r.text
    assert (await api.get(f"/admin/orders/{order['orderId']}"))["payStatus"] == 0
