"""The registry with a credential (SHOP_REGISTRY_AUTH), against the real local Zookeeper: the shop
registers, discovers, holds its lock and cleans up as before, and a client without the credential
(or with another) can neither read the shop's nodes nor register, change or remove a provider."""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import OPEN_ACL_UNSAFE

from shop.infra.registry import ZkRegistry, provider_url, zk_client
from tests.conftest import _unavailable

ZK_HOSTS = os.environ.get("SHOP_TEST_ZK_HOSTS", "127.0.0.1:2181")
IFACE = "shop.v1.GoodsService"


@pytest.fixture
async def shop_registry() -> AsyncIterator[tuple[ZkRegistry, str]]:
    """A registry with a credential of its own under a root of its own; the root removed after, with
    the credential (which the cleanup needs, as `shop cluster down --purge` does)."""
    auth = f"shop:{os.urandom(8).hex()}"
    registry = ZkRegistry(ZK_HOSTS, f"/shop-auth-test-{os.urandom(4).hex()}", auth=auth)
    try:
        await registry.start()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Zookeeper at {ZK_HOSTS}", exc)
    try:
        yield registry, auth
    finally:
        await registry.close()
        zk = zk_client(ZK_HOSTS, auth)
        zk.start(10)
        try:
            zk.delete(registry.root, recursive=True)
            assert zk.exists(registry.root) is None
        finally:
            zk.stop()
            zk.close()


def _client(auth: str | None) -> KazooClient:
    zk = KazooClient(hosts=ZK_HOSTS, auth_data=[("digest", auth)] if auth else None)
    zk.start(10)
    return zk


async def test_without_the_credential_nobody_reads_or_touches_the_shops_nodes(
        shop_registry: tuple[ZkRegistry, str]) -> None:
    registry, auth = shop_registry
    node = await registry.register(IFACE, "10.0.0.5:50051", application="goods")
    assert await registry.hold("cluster-lock", b"the supervisor") is None
    view = await registry.providers(IFACE)
    assert view.addresses == ["10.0.0.5:50051"]  # the shop itself reads and watches as before

    providers = registry.providers_path(IFACE)
    rogue = f"{providers}/{quote(provider_url(IFACE, '10.6.6.6:50051'), safe='')}"
    for credential in (None, "shop:not-the-password", "intruder:anything"):
        zk = _client(credential)
        try:
            for path in (registry.root, providers):
                with pytest.raises(NoAuthError):
                    zk.get_children(path)
            for path in (node, f"{registry.root}/cluster-lock"):
                with pytest.raises(NoAuthError):
                    zk.get(path)
            with pytest.raises(NoAuthError):
                zk.create(rogue, b"", ephemeral=True)  # no provider of its own
            with pytest.raises(NoAuthError):
                zk.delete(node)  # nor one of ours removed
            with pytest.raises(NoAuthError):
                zk.set_acls(providers, OPEN_ACL_UNSAFE)  # nor the door opened
            with pytest.raises(NoAuthError):
                zk.delete(registry.root, recursive=True)
        finally:
            zk.stop()
            zk.close()

    assert view.addresses == ["10.0.0.5:50051"]
    zk = _client(auth)  # the credential reads what the shop made
    try:
        assert zk.get_children(providers) == [node.rsplit("/", 1)[1]]
        assert zk.get(f"{registry.root}/cluster-lock")[0] == b"the supervisor"
        with pytest.raises(NoNodeError):
            zk.get(rogue)
    finally:
        zk.stop()
        zk.close()


def test_a_credential_is_user_and_password() -> None:
    for bad in ("shop", "shop:", ":secret"):
        with pytest.raises(ValueError, match="user:password"):
            zk_client(ZK_HOSTS, bad)
