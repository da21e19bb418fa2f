"""The FastAPI applications: every service's REST endpoints over one wired shop, and the payment
platform stand-in on its own (the sandbox role)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.routing import iter_route_contexts
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from shop import console
from shop.admin import api as admin_api
from shop.infra import metrics
from shop.infra.admission import Limiter
from shop.infra.config import Settings
from shop.infra.openapi import Result, install_openapi
from shop.infra.web import Envelope, SecurityHeaders, install_front_door, ok
from shop.runtime import Shop
from shop.sandbox import api as sandbox_api
from shop.services.coupon import api as coupon_api
from shop.services.goods import api as goods_api
from shop.services.order import api as order_api
from shop.services.order.sold_out import SoldOutGate
from shop.services.pay import api as pay_api
from shop.services.user import api as user_api

# What each HTTP role serves. "all" and "web" serve all of API.md; order-web and pay-web are the
# original's two web applications.
# The sandbox's router is not among them: it is mounted only where the sandbox is on (create_app).
ROUTERS: dict[str, tuple[APIRouter, ...]] = {
    "all": (user_api.router, goods_api.router, coupon_api.router, order_api.router, pay_api.router,
            admin_api.router),
    "order-web": (user_api.router, order_api.router),
    "pay-web": (pay_api.router,),
}
ROUTERS["web"] = ROUTERS["all"]
DOCS_ASSETS = "/docs/assets"


def _app(lifespan: Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]) -> FastAPI:
    # FastAPI's own OpenTelemetry is off: the shop makes its spans itself (infra/tracing.py), and
    # FastAPI's asked on every request whether a global provider was set (no: the shop sets none),
    # reading the environment each time, a twentieth of an order's CPU.
    app = FastAPI(title="shop", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Order and payment back end: see API.md for the contract.",
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    install_front_door(app)
    install_openapi(app)
    app.add_middleware(SecurityHeaders)  # outermost: FrontDoor's own answers get the headers too
    _docs(app)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics_() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/healthz", tags=["health"], response_model=Result[None])
    async def healthz() -> Envelope:
        return ok()

    return app


def _route(app: FastAPI, method: str, path: str) -> Any:
    """The route object routing would put in a request's scope (tracing names its span by it)."""
    return next(r.original_route for r in iter_route_contexts(app.router.routes)
                if r.path == path and method in (r.methods or ()))


def _docs(app: FastAPI) -> None:
    """/docs that works offline: Swagger UI's assets come from the swagger-ui-bundle package and are
    served by the shop (FastAPI's default page loads them from a CDN)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


# The console's page may load only what the shop serves (its own scripts, styles and the chart
# library), and talk only to the shop: a stray link to another host fails in the browser too.
CONSOLE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _console(app: FastAPI) -> None:
    """GET /console: the operator's console, files of the shop.console package, and uPlot from its
    node_modules (installed by `make setup`; without it the console shows no charts, and says so)."""
    app.mount("/console/static", StaticFiles(directory=str(console.STATIC)), name="console-static")
    if console.UPLOT.is_dir():
        app.mount("/console/vendor/uplot", StaticFiles(directory=str(console.UPLOT)), name="console-uplot")

    @app.get("/console", include_in_schema=False)
    async def console_page() -> FileResponse:
        return FileResponse(console.STATIC / "index.html", headers={"Content-Security-Policy": CONSOLE_CSP})


def create_app(shop: Shop, on_started: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await shop.start()
        try:
            if on_started is not None:
                await on_started()
            yield
        finally:
            await shop.stop()

    app = _app(lifespan)
    # What the routes depend on (infra.deps.from_state): each asks only for what it uses.
    s = app.state
    s.tokens, s.admin_token, s.operator, s.sandbox = shop.tokens, shop.admin_token, shop.operator, shop.sandbox
    s.users, s.goods, s.coupons, s.orders, s.pay, s.log = shop.users, shop.goods, shop.coupons, shop.orders, \
        shop.pay, shop.log
    for r in ROUTERS[shop.role]:
        app.include_router(r)
    if order_api.router in ROUTERS[shop.role] and isinstance(shop.orders, SoldOutGate):
        # A sold-out goods's orders refused before FastAPI parses them (infra/web.py Shortcut).
        s.shortcuts[("POST", "/order/confirm")] = order_api.SoldOutShortcut(shop.tokens, shop.orders)
    if order_api.router in ROUTERS[shop.role]:
        _admission(s, shop.settings)
        # Placing an order once admitted, without FastAPI's routing and dependencies (infra/web.py Direct).
        s.direct[("POST", "/order/confirm")] = order_api.ConfirmDirect(shop.tokens, shop.orders,
                                                                       _route(app, "POST", "/order/confirm"))
    if pay_api.router in ROUTERS[shop.role]:  # the platform's notification, likewise
        s.direct[("POST", "/pay/callbackPayment")] = pay_api.NotifyDirect(shop.pay,
                                                                          _route(app, "POST", "/pay/callbackPayment"))
    if shop.sandbox is not None and shop.role in ("all", "web"):
        # SHOP_SANDBOX=1 or --demo only (bootstrap leaves shop.sandbox None otherwise): a shop
        # serving real customers has no public "mark this paid" button; /sandbox/* is then a 404.
        app.include_router(sandbox_api.router)
    if admin_api.router in ROUTERS[shop.role]:
        _console(app)
        if shop.settings.faults:
            app.include_router(admin_api.faults_router())
    shop.runtime.tracing.instrument(app)
    return app


# What admission control limits (infra/admission.py): placing an order, the work that overload is
# made of. Not the calls that settle what is placed already: a payment, a cancel or a refund refused
# would hold stock, coupons and money taken for an order while the shop is busiest, and the payment
# platform's notification refused is only sent again minutes later (its retry schedule), the order
# paid meanwhile and shown unpaid. Those are few (at most one each per order placed). Reads, logins,
# the admin API, /healthz and /metrics are cheap or not order load, and pass as before.
ADMITTED = (("POST", "/order/confirm"),)


def _admission(state: Any, settings: Settings) -> None:
    if settings.admission_active <= 0:
        return
    limiter = Limiter(settings.admission_active, settings.admission_queue, settings.admission_wait_s,
                      settings.admission_target_s, settings.admission_active_least, on_wait=metrics.admission_waited)
    metrics.admission_watch(lambda: limiter.running, lambda: limiter.waiting, lambda: int(limiter.limit))
    for key in ADMITTED:  # one limiter for them all: they share the CPU and the databases
        state.admission[key] = limiter


def create_sandbox_app(settings: Settings, on_started: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
    """The sandbox role: the payment platform stand-in, its notifier running beside it."""
    from shop.bootstrap import sandbox_platform

    sandbox, http = sandbox_platform(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(sandbox.run(), name="sandbox")
        try:
            if on_started is not None:
                await on_started()
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sandbox.close()
            await http.aclose()

    app = _app(lifespan)
    app.state.sandbox = sandbox
    app.include_router(sandbox_api.router)
    return app
