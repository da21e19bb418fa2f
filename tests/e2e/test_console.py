"""The operator console in a real browser (Debian's chromium, driven by Playwright) against a real
served shop (`shop run` in a subprocess, embedded, SHOP_FAULTS=1): sign-in, the orders, an order's
timeline with its compensations, a dead message replayed with its button until the audit is
consistent again, a waiting message retried now, and nothing loaded from another host.

Screenshots are taken along the way into the test's tmp dir, a few also into /tmp/console-shots/
to look at. Without chromium or Playwright the tests skip with the reason, and fail under CI=true.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import support
from tests.conftest import _unavailable
from tests.support import cart_json, order_json

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN = "console-test-admin-token"
SHOTS = Path("/tmp/console-shots")
BASE_ENV = {
    "SHOP_FAULTS": "1", "SHOP_ADMIN_TOKEN": ADMIN, "SHOP_PASSWORD_TIME_COST": "1", "SHOP_PASSWORD_MEMORY_KIB": "1024",
    "SHOP_ORDER_CANCEL_AFTER_S": "2", "SHOP_MESSAGE_MAX_ATTEMPTS": "3", "SHOP_MESSAGE_BACKOFF_MS": "50",
    "SHOP_MESSAGE_BACKOFF_CAP_MS": "200",
}


def served_shop(data_dir: Path, **env: str) -> AbstractContextManager[str]:
    """`shop run` for the console's tests (their environment, and `env` over it)."""
    return support.served_shop(data_dir, BASE_ENV | env)


@pytest.fixture(scope="module")
def shop_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_shop(tmp_path_factory.mktemp("console-shop")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable("chromium", f"{CHROMIUM} is missing (scripts/test-services.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable("playwright", exc)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Console:
    """A page of the console, with what the tests do on it and the requests it made."""

    def __init__(self, page: Any, url: str, shots: Path) -> None:
        self.page, self.url, self.shots = page, url, shots
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def sign_in(self, token: str = ADMIN) -> None:
        self.page.goto(f"{self.url}/console")
        self.page.get_by_label("Admin token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()

    def nav(self, name: str) -> None:
        self.page.locator("header nav").get_by_role("link", name=name, exact=True).click()

    def go(self, hash_: str) -> None:
        self.page.goto(f"{self.url}/console#{hash_}")

    def shot(self, name: str, keep: bool = False) -> None:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if keep:
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, SHOTS / path.name)


@pytest.fixture
def console(browser: Any, shop_url: str, tmp_path: Path) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    c = Console(context.new_page(), shop_url, tmp_path)
    try:
        yield c
        assert not c.errors, c.errors  # no script failed on any page
    finally:
        context.close()


class Api:
    """The shop's HTTP API, as a client and the operator use it outside the console."""

    def __init__(self, url: str) -> None:
        self.c = httpx.Client(base_url=url, timeout=30)
        self.admin = {"Authorization": f"Bearer {ADMIN}"}

    def __call__(self, method: str, path: str, *, expect: int = 200, **kw: Any) -> Any:
        r = self.c.request(method, path, headers=kw.pop("headers", self.admin), **kw)
        assert r.status_code == expect, r.text
        return r.json()["data"]

    def customer(self, money: str = "100.00") -> tuple[str, dict[str, str], str, str]:
        """A new user (logged in), goods of 5000.00 and a coupon of 100.00 for him."""
        name = f"console-{os.urandom(4).hex()}"
        user = {"userName": name, "userPassword": "secret", "userMoney": money}
        uid = self("POST", "/admin/users", json=user)["userId"]
        token = self("POST", "/user/login", json={"userName": name, "userPassword": "secret"}, headers={})["token"]
        gid = self("POST", "/admin/goods", json={"goodsName": "iphone7", "goodsNumber": 10, "goodsPrice": "5000.00"})
        cid = self("POST", "/admin/coupons", json={"userId": uid, "couponPrice": "100.00"})["couponId"]
        return uid, {"Authorization": f"Bearer {token}"}, gid["goodsId"], cid

    def wait(self, check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
        end = time.monotonic() + timeout_s
        while not (value := check()):
            assert time.monotonic() < end, f"{what}: not within {timeout_s} s"
            time.sleep(0.2)
        return value


@pytest.fixture
def api(shop_url: str) -> Iterator[Api]:
    a = Api(shop_url)
    try:
        yield a
    finally:
        a("DELETE", "/admin/faults")
        a.c.close()


def test_a_wrong_token_is_refused(console: Console) -> None:
    console.sign_in("not-the-token")
    alert = console.page.get_by_role("alert")
    alert.filter(has_text="refused").wait_for()
    assert console.page.locator("header nav").is_hidden()
    console.shot("wrong-token", keep=True)
    console.sign_in()
    console.page.get_by_role("heading", name="Overview").wait_for()
    assert console.page.locator("header nav").is_visible()
    # A token the shop stops taking (SHOP_ADMIN_TOKEN changed): the next call brings the sign-in back.
    console.page.evaluate("sessionStorage.setItem('shop.adminToken', 'changed')")
    console.go("orders")  # the next call (or the overview's poll, if it asks first) is refused
    console.page.get_by_role("alert").filter(has_text="sign in again").wait_for()
    assert console.page.get_by_label("Admin token").is_visible()


def test_every_asset_and_call_of_the_console_comes_from_the_shop(console: Console, shop_url: str) -> None:
    response = console.page.goto(f"{shop_url}/console")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    console.sign_in()
    console.page.locator(".chart .uplot").first.wait_for()  # the chart drawn, by the library the shop serves
    for page in ("orders", "messages", "audit", "faults"):
        console.go(page)
        console.page.locator("main h2").wait_for()
    console.shot("overview")
    origin = shop_url + "/"
    elsewhere = [u for u in console.requests if not u.startswith(origin) and not u.startswith("data:")]
    assert not elsewhere, elsewhere
    assert f"{shop_url}/console/vendor/uplot/uPlot.esm.js" in console.requests
    for asset in {u for u in console.requests if "/console/" in u}:
        assert httpx.get(asset).status_code == 200, asset


def test_an_order_is_found_and_its_timeline_shows_each_step(console: Console, api: Api) -> None:
    uid, auth, gid, cid = api.customer()
    order = api("POST", "/order/confirm", headers=auth,
                json=order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))
    console.sign_in()
    console.nav("Orders")
    console.page.get_by_label("User id").fill(uid)
    console.page.get_by_label("Status", exact=True).select_option("1")
    console.page.get_by_role("button", name="Search").click()
    rows = console.page.locator("tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1 and "1 confirmed" in rows.first.inner_text()
    console.shot("orders", keep=True)
    console.page.get_by_role("link", name=order["orderId"]).click()
    console.page.get_by_role("heading", name=f"Order {order['orderId']}").wait_for()
    lanes = console.page.locator(".lanes")
    for kind in ("order.saved", "goods.stock_reduced", "coupon.used", "user.money_paid", "order.confirmed"):
        assert lanes.locator(f'.step.do[data-kind="{kind}"]').count() == 1, kind
    # In the saga's order, left to right.
    kinds = lanes.locator(".step[data-kind]").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds[:5] == ["order.saved", "goods.stock_reduced", "coupon.used", "user.money_paid", "order.confirmed"]
    assert lanes.locator(".step.undo, .step.barrier").count() == 0
    console.shot("timeline-confirmed", keep=True)


def test_a_carts_page_shows_its_lines_and_a_stock_step_for_each(console: Console, api: Api) -> None:
    uid, auth, gid, _ = api.customer()
    case = api("POST", "/admin/goods", json={"goodsName": "case", "goodsNumber": 10, "goodsPrice": "20.00"})["goodsId"]
    order = api("POST", "/order/confirm", headers=auth,
                json=cart_json(uid, [(gid, "5000.00", 1), (case, "20.00", 3)]))
    console.sign_in()
    console.go(f"order/{order['orderId']}")
    lines = console.page.locator("table", has=console.page.locator("caption", has_text="Lines"))
    lines.wait_for()
    cells = lines.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.textContent))")
    assert cells == [[gid, "1", "5000.00", "5000.00"], [case, "3", "20.00", "60.00"]]
    assert console.page.locator('.lanes .step.do[data-kind="goods.stock_reduced"]').count() == 2
    console.shot("timeline-cart", keep=True)


def test_a_failed_order_shows_its_compensations(console: Console, api: Api) -> None:
    uid, auth, gid, cid = api.customer()
    console.sign_in()
    # The fault armed through the console's own page.
    console.nav("Faults")
    console.page.get_by_label("Point").fill("order.after_use_coupon")
    console.page.get_by_label("Action").select_option("error")
    console.page.get_by_label("Times").fill("1")
    console.page.get_by_role("button", name="Arm").click()
    console.page.locator("tbody tr", has_text="order.after_use_coupon").wait_for()
    console.shot("faults")
    failed = api("POST", "/order/confirm", headers=auth, expect=503,
                 json=order_json(uid, gid, "5000.00", coupon_id=cid, money_paid="100.00"))
    order_id = failed["orderId"]
    api.wait(lambda: api("GET", "/admin/audit")["pending"] == 0, "the compensations")
    console.go(f"order/{order_id}")
    lanes = console.page.locator(".lanes")
    lanes.wait_for()
    for kind in ("goods.stock_restored", "coupon.restored", "order.cancelled"):
        assert lanes.locator(f'.step.undo[data-kind="{kind}"]').count() == 1, kind
    # The balance was never paid: its compensation found nothing and left a barrier, in the user's lane.
    barrier = lanes.locator('.step.barrier[data-kind="barrier"]')
    assert barrier.count() == 1 and "user:" in barrier.inner_text()
    assert "compensation steps" in console.page.locator(".note").inner_text()
    console.shot("timeline-compensated", keep=True)


def test_a_dead_message_is_replayed_with_its_button_and_the_audit_turns_consistent(console: Console,
                                                                                     api: Api) -> None:
    uid, auth, gid, _ = api.customer()
    api("POST", "/admin/faults", json={"point": "goods.on_order_cancel", "action": "error"})
    api("POST", "/admin/faults", json={"point": "order.after_reduce_stock", "action": "error", "times": 1})
    order_id = api("POST", "/order/confirm", headers=auth, expect=503, json=order_json(uid, gid, "5000.00"))["orderId"]
    dead = api.wait(lambda: [m for m in api("GET", "/admin/messages?state=dead") if m["key"] == order_id],
                    "the cancel parked dead")
    api("DELETE", "/admin/faults")
    console.sign_in()
    console.page.locator(".card", has_text="Dead messages").filter(has_text=re.compile(r"[1-9]")).wait_for()
    # Both charts are drawn: orders per minute, and this page's readings of pending and dead work.
    for caption in ("Orders per minute", "Pending work and dead messages"):
        console.page.locator("figure.chart", has_text=caption).locator("canvas").wait_for()
    console.shot("overview-dead", keep=True)
    # The audit names the parked message and links its order's timeline.
    console.nav("Audit")
    console.page.locator(".verdict.bad").wait_for()
    link = console.page.locator(".violations a", has_text=order_id).first
    assert link.get_attribute("href") == f"#order/{order_id}"
    console.shot("audit-violation", keep=True)
    link.click()
    console.page.locator('.step.dead[data-kind="message.dead"]').wait_for()
    console.page.get_by_role("link", name="replay it").click()
    row = console.page.locator("section", has_text="Dead").locator("tr", has_text=order_id)
    row.wait_for()
    console.shot("messages-dead", keep=True)
    row.get_by_role("button", name="Replay").click()
    console.page.get_by_role("status").filter(has_text=f"Replayed: message {dead[0]['id']}").wait_for()
    console.go("audit")
    console.page.locator(".verdict.ok").wait_for(timeout=30_000)
    assert console.page.locator(".violations").count() == 0
    console.shot("audit-consistent", keep=True)
    console.go(f"order/{order_id}")
    console.page.locator('.step.undo[data-kind="goods.stock_restored"]').wait_for()


def test_a_message_waiting_in_back_off_is_retried_now(browser: Any, tmp_path: Path) -> None:
    # A shop whose back-off is a minute: the failed delivery waits, visibly, until the button.
    with served_shop(tmp_path / "slow", SHOP_MESSAGE_BACKOFF_MS="60000", SHOP_MESSAGE_BACKOFF_CAP_MS="60000") as url:
        api = Api(url)
        uid, auth, gid, _ = api.customer()
        api("POST", "/admin/faults", json={"point": "goods.on_order_cancel", "action": "error", "times": 1})
        api("POST", "/admin/faults", json={"point": "order.after_reduce_stock", "action": "error", "times": 1})
        order_id = api("POST", "/order/confirm", headers=auth, expect=503,
                       json=order_json(uid, gid, "5000.00"))["orderId"]
        api.wait(lambda: [m for m in api("GET", "/admin/messages?state=retrying") if m["key"] == order_id],
                 "the cancel waiting in back-off")
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            console = Console(context.new_page(), url, tmp_path)
            console.sign_in()
            console.nav("Messages")
            row = console.page.locator("section", has_text="Waiting in back-off").locator("tr", has_text=order_id)
            row.wait_for()
            cells = row.locator("td").all_inner_texts()
            assert cells[4] == "1" and cells[6].endswith("UTC"), cells  # its attempts, its next try
            console.shot("messages-waiting", keep=True)
            row.get_by_role("button", name="Retry now").click()
            handled = lambda: not api("GET", "/admin/messages?state=retrying") and api("GET", "/admin/audit")  # noqa: E731
            assert api.wait(handled, "the retried message handled", timeout_s=10)["consistent"]
            console.page.locator("section", has_text="Waiting in back-off").filter(has_text="none waiting").wait_for()
            assert not console.errors, console.errors
        finally:
            context.close()
            api.c.close()
