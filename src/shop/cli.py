"""The command line: `shop run`, `shop serve ROLE`, `shop cluster up|down`, `shop migrate`, `shop audit`."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from shop.infra.config import Settings
    from shop.runtime import Shop

app = typer.Typer(help="shop: an order and payment back end that never loses money, stock or coupons.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()


@app.callback()
def _private() -> None:
    """Before any command: whatever this process creates (databases, their -wal and -shm files,
    keys, secrets, logs, the cluster's files) is its user's alone (infra/files.py sets the modes
    where each is made too; this covers what a library makes on its own)."""
    os.umask(0o077)


def _settings(data_dir: Path | None) -> Settings:
    from shop.infra.config import Settings

    if data_dir is not None:
        os.environ["SHOP_DATA_DIR"] = str(data_dir)
    return Settings()


@app.command()
def run(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="where the SQLite files live")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="load the demo data and print how to use it")] = False,
) -> None:
    """Serve every service and endpoint from one process (embedded mode)."""
    from shop.app import create_app
    from shop.bootstrap import bootstrap
    from shop.demo import load_demo, usage
    from shop.runtime import freeze_the_lasting

    _logging("shop")
    base = f"http://{host}:{port}"
    # The sandbox notifies this very server unless told otherwise.
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    os.environ.setdefault("SHOP_PAY_NOTIFY_URL", f"http://{local}:{port}/pay/callbackPayment")
    if demo:
        os.environ["SHOP_SANDBOX"] = "1"  # the demo pays at the sandbox
    settings = _settings(data_dir)
    shop = bootstrap(settings)
    # Printed only when generated here: one the operator gave stays out of the terminal and its logs.
    generated = None if settings.admin_token else shop.admin_token
    if generated:
        _say(settings, f"SHOP_ADMIN_TOKEN was not set; this run's admin token: {generated}")
    else:
        _say(settings, "admin token: (from SHOP_ADMIN_TOKEN)")

    async def started() -> None:
        ids = await load_demo(shop) if demo else None
        freeze_the_lasting()
        if ids is not None:  # once nothing but listening is left to do: the commands are pasted at once
            _say(settings, usage(base, ids, generated))

    app_ = create_app(shop, on_started=started)
    _say(settings, f"shop serving on {base} (data in {settings.data_dir.resolve()})")

    _uvicorn(app_, host, port)


def _say(settings: Settings, text: str) -> None:
    """A line for the person who started the shop: on the console, or, when the logs are JSON (read
    by a machine), as a log line like every other."""
    if settings.log_format == "json":
        logging.getLogger("shop").info(text)
    else:
        print(text, flush=True)  # not rich's console: it would wrap the ready-to-paste commands


def _exit_unless_free(host: str, port: int) -> None:
    """A taken port ends the process with EXIT_CANNOT_LISTEN, which tells a supervisor (`shop
    cluster up`) that starting it again will not help while the port stays taken."""
    from shop.cluster import EXIT_CANNOT_LISTEN, cannot_listen

    why = cannot_listen(host, port)
    if why:
        logging.getLogger("shop").error("cannot listen on %s:%d (%s)", host, port, why)
        raise typer.Exit(EXIT_CANNOT_LISTEN)


def _uvicorn(app_: object, host: str, port: int) -> None:
    import uvicorn

    from shop.infra.config import Settings

    # log_config None: uvicorn's lines go through this process's own handler (infra/logs.py), so
    # SHOP_LOG_FORMAT=json covers them; the access log only when asked for (SHOP_ACCESS_LOG=1).
    settings = Settings()
    access = settings.access_log
    # server_header False: no "server: uvicorn" banner telling a scanner what to try.
    uvicorn.run(app_, host=host, port=port, log_config=None, log_level="info" if access else "warning",  # type: ignore[arg-type]
                access_log=access, loop="uvloop" if _has("uvloop") else "asyncio",
                http="httptools" if _has("httptools") else "h11", server_header=False,
                timeout_keep_alive=settings.http_keep_alive_s)


def _logging(name: str) -> None:
    from shop.infra import logs
    from shop.infra.config import Settings

    logs.configure(name, Settings().log_format)


@app.command()
def serve(
    role: Annotated[
        str, typer.Argument(help="user, goods, coupon, order, pay, log, web, order-web, pay-web or sandbox")
    ],
    host: Annotated[str, typer.Option(help="HTTP roles: address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP roles: port to listen on")] = 8000,
    run_migrations: Annotated[bool, typer.Option("--migrate/--no-migrate",
                                                 help="service roles: apply the service's migrations first")] = False,
) -> None:
    """Run one process of the distributed shop. Configuration from the environment: SHOP_REGISTRY_URL
    (Zookeeper), SHOP_BROKER_URL (RabbitMQ), SHOP_<SERVICE>_DB_URL, SHOP_SANDBOX_URL, ... (see docs/operations.md)."""
    from shop.bootstrap import ROLES, WEB_ROLES, bootstrap
    from shop.infra.config import SERVICES, Settings

    if role not in ROLES or role == "all":
        console.print(f"[red]unknown role {role!r}[/red]; one of {', '.join(r for r in ROLES if r != 'all')}")
        raise typer.Exit(2)
    _logging(os.environ.get("SHOP_PROCESS_NAME", role))
    settings = Settings()
    if role in WEB_ROLES or role == "sandbox":
        _exit_unless_free(host, port)
    from shop.runtime import freeze_the_lasting

    async def started() -> None:
        freeze_the_lasting()

    if role == "sandbox":
        from shop.app import create_sandbox_app

        if not settings.sandbox:
            console.print("[red]the sandbox role runs only with SHOP_SANDBOX=1[/red] (a stand-in platform whose "
                          "pay button marks any payment paid: for tests and demos)")
            raise typer.Exit(2)

        _uvicorn(create_sandbox_app(settings, on_started=started), host, port)
        return
    try:
        shop = bootstrap(settings, role=role, run_migrations=run_migrations)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if role in WEB_ROLES:
        from shop.app import create_app

        _uvicorn(create_app(shop, on_started=started), host, port)
        return
    assert role in SERVICES
    if _has("uvloop"):
        # Measured with `shop cluster up` and bench/orders_http.py --wrk: about a tenth more orders/s
        # than the default loop (asyncpg's protocol is written for it; grpc.aio runs on either).
        import uvloop

        uvloop.run(_serve_until_signalled(shop))
    else:
        asyncio.run(_serve_until_signalled(shop))


async def _serve_until_signalled(shop: Shop) -> None:
    """Run a service process until SIGTERM or SIGINT, then stop cleanly: leave the registry first,
    then finish the calls in flight, then stop relaying and consuming (unacknowledged deliveries
    go back to their queues)."""
    from shop.runtime import freeze_the_lasting

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await shop.start()  # inside: a start that fails half-way still leaves the registry at once
        freeze_the_lasting()
        await stop.wait()
    finally:
        await shop.stop()


cluster_app = typer.Typer(help="The whole distributed shop on this machine: `up` runs it, `down --purge` removes it.",
                          no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
DbOption = Annotated[str, typer.Option(help="postgresql or mysql (MariaDB)")]


def _cluster_name(db: str, name: str) -> str:
    """The checks `up` and `down` share: a database server the cluster knows, and a plain name."""
    from shop.cluster import check_name

    if db not in ("postgresql", "mysql"):
        console.print("[red]--db is postgresql or mysql[/red]")
        raise typer.Exit(2)
    try:
        return check_name(name)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@cluster_app.command("up")
def cluster_up(
    db: DbOption = "postgresql",
    port: Annotated[int, typer.Option(help="the front door's port; the sandbox takes the next one")] = 8000,
    scale: Annotated[str, typer.Option(help="instances per role, e.g. goods=2,order-web=1")] = "",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir",
        help="keys, secrets and the sandbox's file (default ./var/cluster, or ./var/cluster-NAME)")] = None,
    name: Annotated[str, typer.Option(help="names the databases (NAME_goods, ...), queues and registry root")] = "shop",
    demo: Annotated[bool, typer.Option("--demo", help="load the demo data and print how to use it")] = False,
) -> None:
    """Run the whole distributed shop locally, one process per service, against the local PostgreSQL
    or MariaDB, RabbitMQ and Zookeeper; restart a process that dies; stop all on Ctrl-C or SIGTERM."""
    from shop.cluster import ClusterConfig, default_data_dir, parse_scale, run_cluster

    name = _cluster_name(db, name)
    from shop.infra.config import Settings

    try:
        config = ClusterConfig(db=db, port=port, scale=parse_scale(scale), data_dir=data_dir or default_data_dir(name),
                               name=name, demo=demo, sandbox=demo or Settings().sandbox)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    _logging("cluster")
    raise typer.Exit(asyncio.run(run_cluster(config)))


@cluster_app.command("down")
def cluster_down(
    purge: Annotated[str | None, typer.Option(
        "--purge", metavar="NAME",
        help="remove the stopped cluster NAME: its databases, queues, exchanges and registry nodes")] = None,
    db: DbOption = "postgresql",
) -> None:
    """Remove what a stopped cluster left on the servers (a running one stops with Ctrl-C or SIGTERM
    to its `shop cluster up`). Refused while a cluster of that name runs."""
    from shop.cluster import ClusterConfig, ClusterRunning, unreachable
    from shop.cluster import purge as do_purge

    if purge is None:
        console.print("[red]shop cluster down: say what to remove: --purge NAME[/red] (a running cluster "
                      "stops with Ctrl-C or SIGTERM to its `shop cluster up`)")
        raise typer.Exit(2)
    config = ClusterConfig(db=db, name=_cluster_name(db, purge))
    env = config.environment("")
    missing = unreachable(config, env)
    if missing:
        console.print(f"[red]cannot purge: these servers do not answer: {'; '.join(missing)}[/red]")
        raise typer.Exit(1)
    try:
        asyncio.run(do_purge(config, env))
    except ClusterRunning as exc:
        console.print(f"[red]not purged: {exc}. Stop it first (Ctrl-C, or SIGTERM to that pid).[/red]")
        raise typer.Exit(1) from None
    except ConnectionError as exc:  # Zookeeper answered the check and then did not
        console.print(f"[red]not purged: {exc}[/red]")
        raise typer.Exit(1) from None
    print(f"purged cluster {purge!r}: databases {purge}_* on {config.db_base_url()}, queues and exchanges "
          f"{env['SHOP_BROKER_PREFIX']}.*, registry nodes under {env['SHOP_REGISTRY_ROOT']} "
          "(its data dir, if any, is left as it was)", flush=True)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@app.command()
def migrate(
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Apply every service's migrations to its database."""
    from shop.bootstrap import migrate as do_migrate
    from shop.infra.config import SERVICES
    from shop.infra.files import private_dir

    settings = _settings(data_dir)
    private_dir(settings.data_dir)
    do_migrate(settings)
    console.print("migrated: " + ", ".join(SERVICES))


@app.command()
def prepare(
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Before the processes of a distributed shop start: create each service's database where it is
    missing, apply the migrations, and make the shared token secret, the sandbox's key pair and,
    unless the operator brings their own, the CA and each role's certificate for the mutual TLS
    between the processes (docs/operations.md, "Calls between processes")."""
    from shop.bootstrap import prepare as do_prepare

    do_prepare(_settings(data_dir))
    console.print("prepared: databases, migrations, secrets, TLS material")


@app.command("recount-child", hidden=True)
def recount_child() -> None:
    """The embedded shop's recount, in a process of its own (admin/recount_child.py says why)."""
    from shop.admin.recount_child import child, child_settings
    from shop.bootstrap import bootstrap

    shop = bootstrap(child_settings(), run_migrations=False)
    asyncio.run(child(shop.operator.auditor, shop.runtime))


@app.command()
def audit(
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """Check that stock, coupons and balances agree with the orders; exit 1 if not."""
    from shop.bootstrap import bootstrap

    async def go() -> dict:
        shop = bootstrap(_settings(data_dir))
        await shop.runtime.connect()
        try:
            return (await shop.operator.full_audit()).json()
        finally:
            await shop.runtime.close()

    report = asyncio.run(go())
    print(json.dumps(report, ensure_ascii=False, indent=2))
    raise typer.Exit(0 if report["consistent"] else 1)
