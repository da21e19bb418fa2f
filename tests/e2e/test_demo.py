"""The quick start as a newcomer meets it: `shop run --demo` prints ready-to-paste commands, and
pasted into a shell they place the original's sample order and pay it."""
from __future__ import annotations

import os
import re
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
            user = c.get(f"/admin/users/{order['userId']}", headers=admin).json()["data"]
            assert (user["userMoney"], user["userScore"]) == ("900.00", 4800)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
