"""The Result envelope every response body is wrapped in."""
from typing import Any

from shop.common.codes import ShopCode


def ok(data: Any = None, message: str = "success") -> dict[str, Any]:
    return {"success": True, "code": ShopCode.SHOP_SUCCESS.name, "message": message, "data": data}


def fail(code: ShopCode, message: str | None = None, data: Any = None) -> dict[str, Any]:
    return {"success": False, "code": code.name, "message": message or code.message, "data": data}
