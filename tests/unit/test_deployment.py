"""The deployment files agree with the code: docker-compose.yml runs the roles `shop serve` knows,
with settings `Settings` reads, each id-minting process with its own worker id; and the
supervisor's scale and environment rules."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from shop.bootstrap import ROLES
from shop.cluster import DEFAULT_SCALE, ClusterConfig, children, parse_scale
from shop.infra.config import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {f"SHOP_{name.upper()}" for name in Settings.model_fields}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_role_with_known_settings() -> None:
    services = _compose()["services"]
    roles: dict[str, list[str]] = {}
    worker_ids = []
    for name, svc in services.items():
        command = svc.get("command")
        if svc.get("image") != "shop:latest":
            continue
        assert command[0] in ("serve", "prepare"), (name, command)
        env = svc["environment"]
        unknown = {k for k in env if k.startswith("SHOP_")} - FIELDS
        assert not unknown, (name, unknown)
        if command[0] == "serve":
            assert command[1] in ROLES and command[1] != "all", (name, command)
            roles.setdefault(command[1], []).append(name)
            worker_ids.append(int(env["SHOP_WORKER_ID"]))
            if command[1] in ("web", "sandbox", "order-web", "pay-web"):
                assert "--port" in command and "--host" in command, (name, command)
    assert set(SERVICES) | {"web", "sandbox"} <= set(roles), roles
    assert len(roles["goods"]) == 2  # the failover the issue asks for, as in `--scale goods=2`
    assert len(worker_ids) == len(set(worker_ids)), worker_ids  # two processes never mint one id
    assert all(0 <= w <= 31 for w in worker_ids)
    # The notify URL and the sandbox URL point at the services that serve them.
    env = services["pay"]["environment"]
    assert env["SHOP_PAY_NOTIFY_URL"].startswith("http://web:8000/")
    assert env["SHOP_SANDBOX_URL"] == "http://sandbox:8001"
    assert "8001" in services["sandbox"]["command"]


def test_compose_has_a_three_node_zookeeper_ensemble_and_no_secrets() -> None:
    services = _compose()["services"]
    zks = [n for n, s in services.items() if str(s.get("image", "")).startswith("zookeeper")]
    assert len(zks) == 3
    assert {str(services[n]["environment"]["ZOO_MY_ID"]) for n in zks} == {"1", "2", "3"}
    env = services["web"]["environment"]
    assert env["SHOP_REGISTRY_URL"] == ",".join(f"{n}:2181" for n in zks)
    assert env["SHOP_ADMIN_TOKEN"].startswith("${") and env["SHOP_TOKEN_SECRET"].startswith("${")


def test_compose_gives_every_server_its_own_credentials_from_the_environment() -> None:
    """No guest/guest, no password written in the file: RabbitMQ's user, the databases' password
    and the registry's credential are required variables, and the shop's URLs use them."""
    text = (ROOT / "docker-compose.yml").read_text()
    services = _compose()["services"]
    assert "guest:guest" not in text
    required = re.compile(r"^\$\{([A-Z_]+):\?[^}]+\}$")  # ${VAR:?message}: compose refuses to start without it
    rabbit = services["rabbitmq"]["environment"]
    assert required.match(rabbit["RABBITMQ_DEFAULT_USER"]) and required.match(rabbit["RABBITMQ_DEFAULT_PASS"])
    assert required.match(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    for name, svc in services.items():
        if svc.get("image") != "shop:latest":
            continue
        env = svc["environment"]
        assert env["SHOP_BROKER_URL"].startswith(
            "amqp://${RABBITMQ_DEFAULT_USER:?set RABBITMQ_DEFAULT_USER}:${RABBITMQ_DEFAULT_PASS:?"), name
        assert required.match(env["SHOP_REGISTRY_AUTH"]), name
        for key, value in env.items():
            userinfo = re.match(r"^[a-z]+://(\$\{[^}]+\}|[^:@/]+):(\$\{[^}]+\}|[^@/]+)@", str(value))
            if userinfo:  # user:password@host: the password a variable
                assert required.match(userinfo.group(2)), (name, key)


def test_compose_calls_between_processes_are_mutual_tls_with_prepares_material() -> None:
    """TLS on (the settings' default, which no process turns off), the material made by the one-shot
    prepare into the volume every process mounts (<data_dir>/tls, SHOP_DATA_DIR=/data)."""
    assert Settings.model_fields["rpc_tls"].default == "on"
    services = _compose()["services"]
    assert services["prepare"]["command"] == ["prepare"]
    volume = services["prepare"]["volumes"][0]
    assert volume.endswith(":/data") and "SHOP_DATA_DIR=/data" in (ROOT / "Dockerfile").read_text()
    for name, svc in services.items():
        if svc.get("image") == "shop:latest" and svc.get("command", [""])[0] == "serve":
            env = svc["environment"]
            assert not {"SHOP_RPC_TLS", "SHOP_TLS_DIR", "SHOP_TLS_CA", "SHOP_TLS_CERT", "SHOP_TLS_KEY"} & set(env), name
            assert volume in svc["volumes"], name
            assert svc["depends_on"]["prepare"] == {"condition": "service_completed_successfully"}, name


def test_dockerfile_runs_the_shop_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["shop"]' in text and "FROM python:3.11" in text


def test_scale_defaults_and_overrides() -> None:
    assert parse_scale("") == DEFAULT_SCALE
    assert parse_scale("goods=2, order-web=1")["goods"] == 2
    assert parse_scale("goods=2,order-web=1")["order-web"] == 1


@pytest.mark.parametrize("text", ["shoes=2", "goods", "goods=x", "goods=0", "goods=9", "web=2", "sandbox=0",
                                  "pay-web=2"])
def test_scale_refusals(text: str) -> None:
    with pytest.raises(ValueError, match="--scale"):
        parse_scale(text)


def test_cluster_environment_is_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SHOP_REGISTRY_ROOT", raising=False)
    env = ClusterConfig(db="mysql", port=9000, data_dir=tmp_path, name="x", sandbox=True).environment("token")
    shop_keys = {k for k in env if k.startswith("SHOP_")}
    assert shop_keys <= FIELDS, shop_keys - FIELDS
    assert env["SHOP_GOODS_DB_URL"].endswith("/x_goods") and env["SHOP_GOODS_DB_URL"].startswith("mysql://")
    assert env["SHOP_SANDBOX_URL"] == "http://127.0.0.1:9001" and env["SHOP_SANDBOX"] == "1"
    assert env["SHOP_PAY_NOTIFY_URL"] == "http://127.0.0.1:9000/pay/callbackPayment"
    assert env["SHOP_REGISTRY_ROOT"] == "/x" and env["SHOP_BROKER_PREFIX"] == "x"
    # Without SHOP_SANDBOX=1 or --demo: no sandbox process, and nothing points the shop at one.
    monkeypatch.delenv("SHOP_SANDBOX_URL", raising=False)
    plain = ClusterConfig(db="mysql", port=9000, data_dir=tmp_path, name="x")
    assert plain.scale["sandbox"] == 0 and "sandbox" not in {c.role for c in children(plain, env)}
    assert plain.environment("token")["SHOP_SANDBOX"] == "0" and "SHOP_SANDBOX_URL" not in plain.environment("t")
    # Mutual TLS unless the operator asks otherwise (to measure its cost), with the cluster's material.
    assert "SHOP_RPC_TLS" not in ClusterConfig(data_dir=tmp_path).environment("t", base={})
    assert ClusterConfig(data_dir=tmp_path).environment("t", base={"SHOP_RPC_TLS": "off"})["SHOP_RPC_TLS"] == "off"
    # The default cluster registers where Dubbo's tooling looks.
    assert ClusterConfig(name="shop", data_dir=tmp_path).environment("t")["SHOP_REGISTRY_ROOT"] == "/dubbo"


def test_cluster_names_the_servers_that_do_not_answer(tmp_path: Path) -> None:
    import socket

    from shop.cluster import unreachable

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    config = ClusterConfig(db="postgresql", data_dir=tmp_path)
    env = {"SHOP_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{dead}/",
           "SHOP_REGISTRY_URL": f"127.0.0.1:{dead},127.0.0.1:{dead}"}
    missing = " ".join(unreachable(config, env))
    assert f"RabbitMQ at 127.0.0.1:{dead}" in missing
    assert f"Zookeeper 1 at 127.0.0.1:{dead}" in missing and f"Zookeeper 2 at 127.0.0.1:{dead}" in missing


@pytest.mark.parametrize("argv", [
    ["serve", "bogus"], ["serve", "all"], ["cluster", "down"], ["cluster", "up", "--db", "sqlite"],
    ["cluster", "up", "--scale", "web=2"],
])
def test_cli_refuses_what_it_cannot_run(argv: list[str]) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "shop", *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)


def test_metrics_ports_are_below_the_ephemeral_range(tmp_path: Path) -> None:
    # An outgoing connection's local port comes from the ephemeral range: a port chosen there could
    # be taken by one before the service binds it, and stay taken for that connection's life.
    from shop.cluster import children
    from shop.ports import _ephemeral_range

    low, _ = _ephemeral_range()
    kids = children(ClusterConfig(db="postgresql", port=18000, data_dir=tmp_path, name="t"), {})
    ports = [int(k.env["SHOP_METRICS_PORT"]) for k in kids if "SHOP_METRICS_PORT" in k.env]
    assert len(ports) == 6 and len(set(ports)) == 6
    assert all(1024 <= p < low for p in ports)


def test_a_taken_metrics_port_is_logged_and_the_process_serves_on(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    from shop.infra import metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level("ERROR", logger="shop.metrics"):
            assert metrics.serve(port, "127.0.0.1") is False
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in caplog.text


def test_the_sandbox_role_refuses_to_start_unless_switched_on(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")} | {"SHOP_DATA_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "shop", "serve", "sandbox", "--port", "1"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "SHOP_SANDBOX=1" in run.stdout, (run.stdout, run.stderr)
