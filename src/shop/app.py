"""The FastAPI application: every service's REST endpoints over one wired shop."""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from shop.admin import api as admin_api
from shop.bootstrap import Shop
from shop.infra.web import install_error_handlers, ok
from shop.services.coupon import api as coupon_api
from shop.services.goods import api as goods_api
from shop.sandbox import api as sandbox_api
from shop.services.order import api as order_api
from shop.services.pay import api as pay_api
from shop.services.user import api as user_api


# What each HTTP role serves. "all" and "web" serve all of API.md; order-web and pay-web are the
# original's two web applications; sandbox is the payment platform stand-in on its own.
ROUTERS: dict[str, tuple[APIRouter, ...]] = {
    "all": (user_api.router, goods_api.router, coupon_api.router, order_api.router, pay_api.router,
            sandbox_api.router, admin_api.router),
    "order-web": (user_api.router, order_api.router),
    "pay-web": (pay_api.router,),
    "sandbox": (sandbox_api.router,),
}
ROUTERS["web"] = ROUTERS["all"]


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

    app = FastAPI(title="shop", version="0.1.0", lifespan=lifespan,
                  description="Order and payment back end: see API.md for the contract.")
    app.state.shop = shop
    app.state.sandbox = shop.sandbox
    install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    async def healthz():
        return ok()

    for r in ROUTERS[shop.role]:
        app.include_router(r)
    if shop.settings.faults and admin_api.router in ROUTERS[shop.role]:
        app.include_router(admin_api.faults_router())
    return app
