"""The original's sample data: user 张三 with a balance, goods "iphone7" at 5000 with 10 in stock,
a coupon of 100. Loaded once per data dir; the ids are kept in demo.json."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from shop.common.errors import ShopError
from shop.infra.files import write_private
from shop.runtime import Shop
from shop.services.coupon.contracts import CreateCoupon
from shop.services.goods.contracts import CreateGoods
from shop.services.user.contracts import CreateUser

USER, PASSWORD = "张三", "123456"


async def load_demo(shop: Shop) -> dict[str, Any]:
    path: Path = shop.settings.data_dir / "demo.json"
    if path.exists():
        ids = json.loads(path.read_text())
        try:
            await shop.users.find_user(int(ids["userId"]))
            return ids
        except ShopError:
            pass  # a data dir emptied by hand: load afresh
    user_id = await shop.users.create_user(CreateUser(USER, PASSWORD, Decimal("1000.00"), "18888888888"))
    goods_id = await shop.goods.create_goods(
        CreateGoods("iphone7", 10, Decimal("5000.00"), "the original's sample goods")
    )
    coupon_id = await shop.coupons.create_coupon(CreateCoupon(user_id, Decimal("100.00")))
    ids = {"userId": str(user_id), "goodsId": str(goods_id), "couponId": str(coupon_id)}
    write_private(path, json.dumps(ids).encode())
    return ids


def usage(base: str, ids: dict[str, Any], admin_token: str | None) -> str:
    """admin_token: the one the shop generated, to print; None when the operator gave it
    (SHOP_ADMIN_TOKEN), which is then never printed: the commands read it from the shell."""
    order = {
        "userId": ids["userId"], "goodsId": ids["goodsId"], "goodsNumber": 1, "goodsPrice": "5000.00",
        "shippingFee": "0.00", "orderAmount": "5000.00", "couponId": ids["couponId"], "moneyPaid": "100.00",
        "address": "北京", "consignee": USER,
    }
    login = json.dumps({"userName": USER, "userPassword": PASSWORD}, ensure_ascii=False)
    field = "python3 -c 'import sys,json; print(json.load(sys.stdin)[\"data\"][\"{}\"])'"
    payment = '{"orderId": "\'$ORDER\'", "payAmount": "4800.00"}'
    admin = admin_token or "$SHOP_ADMIN_TOKEN"
    signed_in = "the admin token" if admin_token else "the admin token (from SHOP_ADMIN_TOKEN)"
    return f"""
Demo data: user {USER} (password {PASSWORD}, balance 1000.00), goods iphone7 (5000.00, 10 in stock),
a coupon of 100.00. Try it (needs curl and python3):

  TOKEN=$(curl -s {base}/user/login -H 'Content-Type: application/json' \\
      -d '{login}' | {field.format("token")})

  # place the order: 5000 - coupon 100 - balance 100 = pay amount 4800
  ORDER=$(curl -s {base}/order/confirm -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{json.dumps(order, ensure_ascii=False)}' | {field.format("orderId")})

  # pay the 4800 at the payment platform's sandbox, which notifies the shop (signed)
  PAY=$(curl -s {base}/pay/createPayment -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{payment}' | {field.format("payId")})
  curl -s -X POST {base}/sandbox/pay/$PAY
  sleep 1; curl -s {base}/order/$ORDER -H "Authorization: Bearer $TOKEN"\
     # payStatus 2 (the notification is asynchronous)

  # what is left (balance 900.00, 4800 points), and whether every service agrees
  curl -s {base}/user/me -H "Authorization: Bearer $TOKEN"
  curl -s {base}/admin/goods/{ids["goodsId"]} -H "Authorization: Bearer {admin}"
  curl -s {base}/admin/audit -H "Authorization: Bearer {admin}"

OpenAPI docs: {base}/docs
Operator console: {base}/console (sign in with {signed_in})
"""
