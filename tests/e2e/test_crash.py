"""Crash tests on the real thing: `shop run` in a subprocess, killed mid-order, restarted on the same data dir.

ARCHITECTURE.md point 5 (the armed cancel): a pre-order is saved with its cancel message due at
now + SHOP_ORDER_CANCEL_AFTER_S. If the process dies anywhere between saving the pre-order and
confirming it, the restarted process must cancel the order once the deadline passes (API.md:
"acted on within 2 seconds of passing, also right after a restart"), and every participant must
give back exactly what it took. A process dying while compensating must resume the compensation
on restart, and never apply it twice. A confirmed order must come through a restart untouched.

The order id is never returned to the client (the process died), so it is read from the order
service's own SQLite file, read-only, while the process is down.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shop.cluster import free_ports

ADMIN = "crash-test-admin-token"
CANCEL_AFTER_S = 2.0
ACTED_WITHIN_S = 2.0  # API.md, "Deadlines"
SLACK_S = 1.0  # polling and scheduling on a small, busy machine
CRASH_EXIT = 86  # shop.infra.faults: a "crash" fault is os._exit(86)
SHOP = Path(sys.executable).with_name("shop")

# Each order fault point, with what the participants hold when the process dies there:
# (stock, balance in cents, coupon is_used), read from their files while the process is down.
ORDER_POINTS = {
    "order.after_pre_order": (10, 10000, 0),
    "order.after_reduce_stock": (9, 10000, 0),
    "order.after_use_coupon": (9, 10000, 1),
    "order.after_reduce_money": (9, 0, 1),
    "order.before_confirm": (9, 0, 1),
}


def _free_port() -> int:
    return free_ports()  # below the ephemeral range: shop.cluster.free_ports says why


class ShopProcess:
    """`shop run` on a loopback port and a data dir; stop and start again on the same dir (and port)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_at = 0.0  # monotonic time /healthz first answered, for this run
        self.env = {
            **os.environ,
            "SHOP_ADMIN_TOKEN": ADMIN,
            "SHOP_FAULTS": "1",
            "SHOP_ORDER_CANCEL_AFTER_S": str(CANCEL_AFTER_S),
            "SHOP_TOKEN_SECRET": "crash-test-token-secret-of-32-bytes-or-more",
            "SHOP_PASSWORD_TIME_COST": "1",
            "SHOP_PASSWORD_MEMORY_KIB": "1024",
            "SHOP_MESSAGE_BACKOFF_MS": "50",
            "SHOP_SANDBOX_NOTIFY_SCHEDULE_S": "0.3,0.5,1,1,2",
            "SHOP_SANDBOX": "1",
        }
        self.env.pop("SHOP_DATA_DIR", None)
        self._runs = 0

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"shop-{self._runs}.log"

    def logs(self) -> str:
        """Every run's output, for assertion messages."""
        out = []
        for i in range(1, self._runs + 1):
            p = self.data_dir.parent / f"shop-{i}.log"
            if p.exists():
                out.append(f"--- run {i} ---\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def start(self, timeout_s: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._runs += 1
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(SHOP), "run", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"shop run exited with {self.proc.returncode} while starting\n{self.logs()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1.0).status_code == 200:
                    self.ready_at = time.monotonic()
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"shop run did not answer /healthz within {timeout_s}s\n{self.logs()}")

    def wait_exit(self, timeout_s: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> int:
        """A clean stop (SIGTERM, uvicorn shuts down and the shop closes its databases)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def kill(self) -> int:
        """The hard way: SIGKILL, no clean-up at all."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=10)

    def restart(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.start()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=15.0)


@pytest.fixture
def shop_proc(tmp_path: Path) -> Iterator[ShopProcess]:
    sp = ShopProcess(tmp_path / "data")
    sp.start()
    try:
        yield sp
    finally:
        if sp.proc is not None and sp.proc.poll() is None:
            sp.kill()


# --- the API as a client and an operator use it --------------------------------------------------

class Api:
    def __init__(self, sp: ShopProcess) -> None:
        self.sp = sp
        self.admin = {"Authorization": f"Bearer {ADMIN}"}

    def _ok(self, r: httpx.Response) -> Any:
        assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
        body = r.json()
        assert body["success"] is True, body
        return body["data"]

    def post_admin(self, path: str, body: dict[str, Any]) -> Any:
        with self.sp.client() as c:
            return self._ok(c.post(path, json=body, headers=self.admin))

    def get_admin(self, path: str) -> Any:
        with self.sp.client() as c:
            return self._ok(c.get(path, headers=self.admin))

    def arm(self, point: str, action: str, times: int | None = None) -> None:
        body: dict[str, Any] = {"point": point, "action": action}
        if times is not None:
            body["times"] = times
        self.post_admin("/admin/faults", body)

    def state(self, w: World) -> tuple[int, str, int]:
        """(stock, balance, coupon isUsed), as the operator sees them."""
        return (
            self.get_admin(f"/admin/goods/{w.goods_id}")["goodsNumber"],
            self.get_admin(f"/admin/users/{w.user_id}")["userMoney"],
            self.get_admin(f"/admin/coupons/{w.coupon_id}")["isUsed"],
        )

    def audit(self) -> dict[str, Any]:
        return self.get_admin("/admin/audit")


class World:
    """The original scenario: a user with 100.00, goods at 5000.00 with 10 in stock, a 100.00 coupon."""

    def __init__(self, api: Api) -> None:
        self.user_id = api.post_admin(
            "/admin/users", {"userName": "crash-user", "userPassword": "secret", "userMoney": "100.00"}
        )["userId"]
        self.goods_id = api.post_admin(
            "/admin/goods", {"goodsName": "iphone7", "goodsNumber": 10, "goodsPrice": "5000.00"}
        )["goodsId"]
        self.coupon_id = api.post_admin("/admin/coupons", {"userId": self.user_id, "couponPrice": "100.00"})["couponId"]
        with api.sp.client() as c:
            token = api._ok(c.post("/user/login", json={"userName": "crash-user", "userPassword": "secret"}))["token"]
        self.auth = {"Authorization": f"Bearer {token}"}

    def order(self) -> dict[str, Any]:
        return {
            "userId": self.user_id, "goodsId": self.goods_id, "goodsNumber": 1, "goodsPrice": "5000.00",
            "shippingFee": "0.00", "orderAmount": "5000.00", "couponId": self.coupon_id, "moneyPaid": "100.00",
            "address": "北京",
        }


RESTORED = (10, "100.00", 0)
TAKEN = (9, "0.00", 1)


# --- reading the order service's file while the process is down ----------------------------------

def read_orders(data_dir: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{data_dir / 'order.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT order_id, order_status FROM trade_order")]
    finally:
        conn.close()


def _read_one(path: Path, sql: str, *args: Any) -> Any:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchone()[0]
    finally:
        conn.close()


def held_on_disk(data_dir: Path, w: World) -> tuple[int, int, int]:
    """(stock, balance in cents, coupon is_used) as each service's own file has them."""
    return (
        _read_one(data_dir / "goods.db", "SELECT goods_number FROM trade_goods WHERE goods_id = ?", int(w.goods_id)),
        _read_one(data_dir / "user.db", "SELECT user_money FROM trade_user WHERE user_id = ?", int(w.user_id)),
        _read_one(data_dir / "coupon.db", "SELECT is_used FROM trade_coupon WHERE coupon_id = ?", int(w.coupon_id)),
    )


def armed_cancels(data_dir: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{data_dir / 'order.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        # Not sent yet: a sent message is kept, its due_at past 2^62 (infra/messaging/outbox.py).
        waiting = "SELECT msg_tag, msg_key, due_at FROM trade_mq_producer_temp WHERE due_at < 4611686018427387904"
        return [dict(r) for r in conn.execute(waiting)]
    finally:
        conn.close()


def wait_for(what: str, check: Callable[[], Any], deadline: float, sp: ShopProcess) -> Any:
    """Poll `check` until it returns something truthy, failing at the monotonic `deadline`."""
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not by the deadline (last seen: {last!r})\n{sp.logs()}")
        time.sleep(0.1)


def crash_order(sp: ShopProcess, w: World) -> None:
    """POST /order/confirm with a crash armed: the connection drops and the process is gone."""
    with sp.client() as c, pytest.raises(httpx.TransportError):
        r = c.post("/order/confirm", json=w.order(), headers=w.auth)
        pytest.fail(f"the order was answered although the process should have died: {r.status_code} {r.text}")
    assert sp.wait_exit() == CRASH_EXIT, f"the process did not die of the injected crash\n{sp.logs()}"


def settled(api: Api, w: World, order_id: int, status: int, stock_balance_coupon: tuple[int, str, int]):
    """The order has `status`, the participants show the given state and the audit is quiet and clean."""

    def check() -> dict[str, Any] | None:
        o = api.get_admin(f"/admin/orders/{order_id}")
        if o["orderStatus"] != status or api.state(w) != stock_balance_coupon:
            return None
        a = api.audit()
        return a if a["pending"] == 0 else None

    return check


# --- the tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("point", list(ORDER_POINTS))
def test_crash_mid_order_is_cancelled_after_restart(shop_proc: ShopProcess, point: str) -> None:
    api = Api(shop_proc)
    w = World(api)
    assert api.state(w) == RESTORED
    api.arm(point, "crash")

    sent = time.monotonic()
    crash_order(shop_proc, w)

    # The pre-order survived the crash unconfirmed, with its cancel still armed (not yet due).
    orders = read_orders(shop_proc.data_dir)
    assert len(orders) == 1 and orders[0]["order_status"] == 0, orders
    order_id = orders[0]["order_id"]
    assert [(m["msg_tag"], m["msg_key"]) for m in armed_cancels(shop_proc.data_dir)] == [("cancel", str(order_id))]
    # It died where it was told to: the steps before the point committed, none after it.
    assert held_on_disk(shop_proc.data_dir, w) == ORDER_POINTS[point]

    shop_proc.start()  # faults live in memory: this run has none armed
    # The deadline passes at sent + CANCEL_AFTER_S (or already has, by the time we are back up).
    deadline = max(sent + CANCEL_AFTER_S, shop_proc.ready_at) + ACTED_WITHIN_S + SLACK_S
    report = wait_for(f"order {order_id} cancelled and everything given back",
                      settled(api, w, order_id, 2, RESTORED), deadline, shop_proc)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert api.get_admin(f"/admin/coupons/{w.coupon_id}")["orderId"] is None
    assert api.get_admin("/admin/messages?state=dead") == []

    # Nothing more happens later: with the audit quiet (settled() waited for it) nothing is in flight,
    # and nothing is left armed to come due; the compensation ran once.
    assert api.get_admin(f"/admin/orders/{order_id}")["orderStatus"] == 2
    assert api.state(w) == RESTORED
    assert read_orders(shop_proc.data_dir) == [{"order_id": order_id, "order_status": 2}]
    assert armed_cancels(shop_proc.data_dir) == []


# The consumer that crashes, and what is given back by then: the goods consumer runs first (nothing
# is back yet); by the user consumer the stock and the coupon are back, the balance is not.
@pytest.mark.parametrize(("consumer", "held_at_crash"), [("goods", (9, 0, 1)), ("user", (10, 0, 0))])
def test_crash_while_compensating_resumes_once_after_restart(
    shop_proc: ShopProcess, consumer: str, held_at_crash: tuple[int, int, int],
) -> None:
    """The order fails (an error after the balance was paid), and the process dies in a consumer of
    its cancel message: in the goods consumer (the first to run, nothing given back yet) or in the
    user consumer (stock and coupon given back already, the balance not)."""
    api = Api(shop_proc)
    w = World(api)
    api.arm("order.after_reduce_money", "error")
    api.arm(f"{consumer}.on_order_cancel", "crash", times=1)

    crash_order(shop_proc, w)

    # The failure was recorded before the compensation began: the order is cancelled, not pending.
    orders = read_orders(shop_proc.data_dir)
    assert len(orders) == 1 and orders[0]["order_status"] == 2, orders
    order_id = orders[0]["order_id"]
    assert held_on_disk(shop_proc.data_dir, w) == held_at_crash

    shop_proc.start()
    deadline = shop_proc.ready_at + ACTED_WITHIN_S + SLACK_S  # the deliveries are due already
    report = wait_for(f"order {order_id}'s compensation resumed", settled(api, w, order_id, 2, RESTORED),
                      deadline, shop_proc)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert api.get_admin("/admin/messages?state=dead") == []

    # Exactly once: nothing is left armed to come due later, and another restart (which resumes
    # whatever a crash left behind) changes nothing: stock 10, not 11.
    assert armed_cancels(shop_proc.data_dir) == []
    shop_proc.restart()
    # Whatever the restart resumed is in the audit's count until it is handled: wait for quiet.
    report = wait_for("a quiet audit after the restart", settled(api, w, order_id, 2, RESTORED),
                      shop_proc.ready_at + ACTED_WITHIN_S + SLACK_S, shop_proc)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert api.state(w) == RESTORED
    assert api.get_admin(f"/admin/orders/{order_id}")["orderStatus"] == 2


def test_confirmed_order_survives_restart_untouched(shop_proc: ShopProcess) -> None:
    """A SIGKILL straight after the confirmation (a clean stop is exercised by the test above)."""
    api = Api(shop_proc)
    w = World(api)
    with shop_proc.client() as c:
        r = c.post("/order/confirm", json=w.order(), headers=w.auth)
    assert r.status_code == 200, r.text
    order = r.json()["data"]
    assert order["orderStatus"] == 1 and order["payAmount"] == "4800.00"
    confirmed_at = time.monotonic()
    order_id = order["orderId"]
    assert api.state(w) == TAKEN
    # The confirmation re-armed the cancel for the payment timeout (default 1800 s), in the same
    # transaction: it is no longer due at the crash deadline.
    armed = armed_cancels(shop_proc.data_dir)
    assert [(m["msg_tag"], m["msg_key"]) for m in armed] == [("cancel", order_id)]
    assert armed[0]["due_at"] > time.time() * 1000 + 1700 * 1000

    assert shop_proc.kill() == -signal.SIGKILL
    shop_proc.start()

    # Past the deadline the order would have had, and past the time given to act on it.
    time.sleep(max(0.0, confirmed_at + CANCEL_AFTER_S + ACTED_WITHIN_S + 0.5 - time.monotonic()))
    stored = api.get_admin(f"/admin/orders/{order_id}")
    assert stored["orderStatus"] == 1 and stored["payStatus"] == 0, stored
    assert stored["confirmTime"] == order["confirmTime"]
    assert api.state(w) == TAKEN
    coupon = api.get_admin(f"/admin/coupons/{w.coupon_id}")
    assert coupon["orderId"] == order_id
    assert api.audit() == {"consistent": True, "violations": [], "pending": 0}
    assert read_orders(shop_proc.data_dir) == [{"order_id": int(order_id), "order_status": 1}]


def test_crash_right_after_the_payment_is_marked_paid(shop_proc: ShopProcess) -> None:
    """The notification's transaction committed (payment paid, its message in the outbox), the
    process died before answering: after a restart the platform's retry is answered as a
    duplicate, the message leaves, and the order is paid with its points added once."""
    api = Api(shop_proc)
    w = World(api)
    with shop_proc.client() as c:
        order = api._ok(c.post("/order/confirm", json=w.order(), headers=w.auth))
        payment = api._ok(c.post("/pay/createPayment", json={"orderId": order["orderId"], "payAmount": "4800.00"},
                                 headers=w.auth))
    api.arm("pay.after_mark_paid", "crash")
    with shop_proc.client() as c, contextlib.suppress(httpx.TransportError):
        c.post(f"/sandbox/pay/{payment['payId']}")  # the notification that follows kills the process
    assert shop_proc.wait_exit() == CRASH_EXIT, shop_proc.logs()
    assert _read_one(shop_proc.data_dir / "pay.db", "SELECT is_paid FROM trade_pay WHERE pay_id = ?",
                     int(payment["payId"])) == 2
    assert _read_one(shop_proc.data_dir / "order.db", "SELECT pay_status FROM trade_order WHERE order_id = ?",
                     int(order["orderId"])) == 0

    shop_proc.start()

    # The platform's retry is answered, so it retries no more (its own file says so: the shop cannot).
    def answered() -> bool:
        return _read_one(shop_proc.data_dir / "sandbox.db", "SELECT notified FROM sandbox_trade WHERE pay_id = ?",
                         int(payment["payId"])) == 1
    wait_for("the platform's retry to be answered", answered, time.monotonic() + 10, shop_proc)

    def settled() -> Any:
        o = api.get_admin(f"/admin/orders/{order['orderId']}")
        a = api.audit()
        return o["payStatus"] == 2 and a["pending"] == 0 and a
    report = wait_for("the order to be paid", settled, time.monotonic() + 10, shop_proc)
    assert report == {"consistent": True, "violations": [], "pending": 0}
    assert api.get_admin(f"/admin/users/{w.user_id}")["userScore"] == 4800
    assert len(api.get_admin(f"/admin/paylog?orderId={order['orderId']}")) == 1
