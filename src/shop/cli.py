"""The command line: `shop run`, `shop migrate`, `shop audit`."""
from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(help="shop: an order and payment back end that never loses money, stock or coupons.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def _settings(data_dir: Optional[Path]):  # noqa: ANN202
    from shop.infra.config import Settings

    if data_dir is not None:
        os.environ["SHOP_DATA_DIR"] = str(data_dir)
    return Settings()


@app.command()
def run(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="where the SQLite files live")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="load the demo data and print how to use it")] = False,
) -> None:
    """Serve every service and endpoint from one process (embedded mode)."""
    import uvicorn

    from shop.app import create_app
    from shop.bootstrap import bootstrap
    from shop.demo import load_demo, usage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    base = f"http://{host}:{port}"
    # The sandbox notifies this very server unless told otherwise.
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    os.environ.setdefault("SHOP_PAY_NOTIFY_URL", f"http://{local}:{port}/pay/callbackPayment")
    settings = _settings(data_dir)
    shop = bootstrap(settings)
    if not settings.admin_token:
        console.print(f"[bold]SHOP_ADMIN_TOKEN[/bold] was not set; this run's admin token: {shop.admin_token}")

    async def demo_data() -> None:
        ids = await load_demo(shop)
        print(usage(base, ids, shop.admin_token), flush=True)

    app_ = create_app(shop, on_started=demo_data if demo else None)
    console.print(f"shop serving on {base} (data in {settings.data_dir.resolve()})")

    uvicorn.run(app_, host=host, port=port, log_level="warning", access_log=False,
                loop="uvloop" if _has("uvloop") else "asyncio", http="httptools" if _has("httptools") else "h11")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@app.command()
def migrate(
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir")] = None,
) -> None:
    """Apply every service's migrations to its database."""
    from shop.bootstrap import migrate as do_migrate
    from shop.infra.config import SERVICES

    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    do_migrate(settings)
    console.print("migrated: " + ", ".join(SERVICES))


@app.command()
def audit(
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir")] = None,
) -> None:
    """Check that stock, coupons and balances agree with the orders; exit 1 if not."""
    from shop.bootstrap import bootstrap

    async def go() -> dict:
        shop = bootstrap(_settings(data_dir))
        await shop.connect()
        try:
            return (await shop.audit()).json()
        finally:
            await shop.close()

    report = asyncio.run(go())
    print(json.dumps(report, ensure_ascii=False, indent=2))
    raise typer.Exit(0 if report["consistent"] else 1)
