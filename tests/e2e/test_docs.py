"""/docs works offline, in every mode: the page and every asset it loads come from the shop."""
from __future__ import annotations

import re

import httpx


async def test_the_docs_page_loads_its_assets_from_the_shop(client: httpx.AsyncClient) -> None:
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
    assets += re.findall(r"""url: ?["']([^"']+)["']""", r.text)  # the OpenAPI document the page loads
    assert "/docs/assets/swagger-ui-bundle.js" in assets and "/openapi.json" in assets, assets
    for url in assets:
        assert url.startswith("/"), f"{url} is loaded from another host"
        asset = await client.get(url)
        assert asset.status_code == 200 and asset.content, url
    assert "SwaggerUIBundle" in (await client.get("/docs/assets/swagger-ui-bundle.js")).text
