"""The quick start as a newcomer meets it: `shop run --demo` prints ready-to-paste commands, and
pasted into a shell they place the original's sample order and pay it."""
from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shop.cluster import free_ports

SHOP = Path(sys.executable).with_name("shop")


def _free_port() -> int:
    return free_ports()  # below the ephemeral range: shop.cluster.free_ports says why


def test_the_printed_demo_commands_work(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    log = tmp_path / "shop.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(SHOP), "run", "--demo", "--port", str(port), "--data-dir", str(tmp_path / "var")],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 30
        while "OpenAPI docs" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < end, log.read_text(errors="replace")
            time.sleep(0.1)
        text = log.read_text()
        token = re.search(r"this run's admin token: (\S+)$", text, re.M)
        assert token, text
        # The commands: every indented line between "Try it" and the docs line, as printed.
        block = text[text.index("Try it"):text.index("OpenAPI docs")].splitlines()[1:]
        script = "\n".join(line.strip() for line in block) + '\necho; echo "ORDER=$ORDER"\n'
        run = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, (run.stdout, run.stderr)
        order_id = re.search(r"^ORDER=(\d+)$", run.stdout, re.M)
        assert order_id, run.stdout
        admin = {"Authorization": f"Bearer {token.group(1)}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            deadline = time.monotonic() + 20
            while c.get(f"/admin/orders/{order_id.group(1)}", headers=admin).json()["data"]["payStatus"] != 2:
                assert time.monotonic() < deadline, "the sample order was never paid"
                time.sleep(0.2)
            order = c.get(f"/admin/orders/{order_id.group(1)}", headers=admin).json()["data"]
            assert (order["orderStatus"], order["payAmount"]) == (1, "4800.00")
            audit = c.get("/admin/audit", headers=admin).json()["data"]
            deadline = time.monotonic() + 20
            while audit["pending"]:
                assert time.monotonic() < deadline, audit
                time.sleep(0.2)
                audit = c.get("/admin/audit", headers=admin).json()["data"]
            assert audit["consistent"], audit
            # It froze what it built at its start out of Python's full collections (runtime.freeze_the_lasting).
            frozen = re.search(r"^shop_gc_frozen_objects (\S+)$", c.get("/metrics").text, re.M)
            assert frozen and float(frozen.group(1)) > 50_000, frozen
            user = c.get(f"/admin/users/{order['userId']}", headers=admin).json()["data"]
            assert (user["userMoney"], user["userScore"]) == ("900.00", 4800)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([str(SHOP), *argv], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(proc: subprocess.Popen[bytes], log: Path, text: str) -> str:
    end = time.monotonic() + 30
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < end, log.read_text(errors="replace")
        time.sleep(0.1)
    return log.read_text()


def test_a_given_admin_token_is_never_printed_and_the_files_are_private(tmp_path: Path) -> None:
    port = _free_port()
    given = "the-operators-own-admin-token"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}, "SHOP_ADMIN_TOKEN": given}
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an older version, or another tool, left it
    log = tmp_path / "shop.log"
    proc = _start(["run", "--demo", "--port", str(port), "--data-dir", str(data)], env, log)
    try:
        text = _wait_for(proc, log, "OpenAPI docs")
        assert given not in text
        assert "(from SHOP_ADMIN_TOKEN)" in text and "$SHOP_ADMIN_TOKEN" in text
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            r = c.get("/healthz")
            assert "server" not in r.headers and r.headers["x-content-type-options"] == "nosniff"
            r = c.get("/sandbox/trades/no-such-trade")  # --demo mounts the sandbox
            assert r.status_code == 404 and r.json()["code"] == "SHOP_PAYMENT_NOT_FOUND"
            assert c.get("/admin/audit", headers={"Authorization": f"Bearer {given}"}).status_code == 200
        _idle_connection_outlives_a_clients_own_limit(port)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in data.iterdir()}
        assert "user.db" in modes and "user.db-wal" in modes and "demo.json" in modes, modes
        assert set(modes.values()) == {oct(0o600)}, modes
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _idle_connection_outlives_a_clients_own_limit(port: int) -> None:
    """A connection idle past httpx's and uvicorn's 5 s is still open: were the shop to close it then,
    a client sending on it at that moment would lose its request with no answer."""
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for _ in range(2):
            s.sendall(request)
            assert _response(s).startswith(b"HTTP/1.1 200")
            time.sleep(6.0)
        s.settimeout(0.5)
        try:
            assert s.recv(1) != b"", "the shop closed an idle connection within 12 s"
        except TimeoutError:
            pass  # still open, nothing to read: as it should be


def _response(s: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (its head, then Content-Length bytes), however it was split."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        body += chunk
    assert len(body) == length, (head, body)
    return head + b"\r\n\r\n" + body


def test_shop_run_without_the_sandbox_has_no_sandbox(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    log = tmp_path / "shop.log"
    proc = _start(["run", "--port", str(port), "--data-dir", str(tmp_path / "var")], env, log)
    try:
        _wait_for(proc, log, "shop serving on")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            end = time.monotonic() + 20
            while True:
                try:
                    c.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < end
                    time.sleep(0.1)
            for path in ("/sandbox/pay/1", "/sandbox/refund/1", "/sandbox/notify/1/resend"):
                r = c.post(path)
                assert r.status_code == 404 and r.json()["code"] == "SHOP_NOT_FOUND", (path, r.text)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
