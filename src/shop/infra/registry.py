"""The service registry on Zookeeper (the original's), through kazoo.

Nodes follow Dubbo's layout, so Dubbo's own tooling (its admin console, zkCli habits) sees them:

    /<root>/<interface>/providers/<URL-quoted provider URL>      root "/dubbo" by default
    e.g. /dubbo/shop.goods.GoodsService/providers/grpc%3A%2F%2F10.0.0.5%3A50051%2Fshop.goods...

Every provider instance creates one EPHEMERAL node per interface it serves. The node lives as long
as the instance's Zookeeper session: close() ends the session and the server drops the nodes at
once; a crashed instance's nodes stay until its session expires (about the session timeout), and
callers fail over meanwhile with Providers.mark_failed. Parents are persistent, as in Dubbo.

kazoo is thread-based: its watch and connection-state callbacks run on its own threads and are
handed to the event loop with call_soon_threadsafe; its blocking calls run in asyncio.to_thread.

With a credential (SHOP_REGISTRY_AUTH "user:password") every session authenticates with it (digest)
and every node the shop creates (the root, the interfaces, the providers, the cluster's lock) is
readable and writable by that user only: another client of the ensemble can neither list the
providers nor register one. Nodes made before the credential was set keep their open ACL.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch
from kazoo.security import make_digest_acl

from shop.common.errors import ServiceUnavailable

log = logging.getLogger("shop.registry")


def zk_client(hosts: str, auth: str | None, **options: Any) -> KazooClient:
    """A kazoo client of the shop's: authenticated with `auth` ("user:password"), and creating
    nodes only that user may touch; without it, as open as Zookeeper's defaults."""
    if not auth:
        return KazooClient(hosts=hosts, **options)
    user, sep, password = auth.partition(":")
    if not (user and sep and password):
        raise ValueError("the registry credential is user:password")
    return KazooClient(hosts=hosts, auth_data=[("digest", auth)],
                       default_acl=[make_digest_acl(user, password, all=True)], **options)


def provider_url(interface: str, address: str, protocol: str = "grpc", **params: Any) -> str:
    """Dubbo's provider URL. pid and timestamp are there (as in Dubbo) so that a restarted instance
    on the same address gets a node of its own beside its predecessor's not yet expired one."""
    if not interface or "/" in interface:
        raise ValueError(f"interface must be a non-empty name without '/': {interface!r}")
    if _address(f"{protocol}://{address}/") != address:
        raise ValueError(f"address must be host:port: {address!r}")
    query = {"interface": interface, "side": "provider", "pid": os.getpid(), "timestamp": int(time.time() * 1000)}
    query.update(params)
    return f"{protocol}://{address}/{interface}?{urlencode(sorted((k, str(v)) for k, v in query.items()))}"


def _address(url: str) -> str | None:
    """host:port of a provider URL, None for anything else found under providers/."""
    try:
        parts = urlsplit(url)
        if parts.hostname and parts.port:
            return parts.netloc.rpartition("@")[2]
    except ValueError:  # a port that is not a number
        pass
    return None


class Providers:
    """A live view of one interface's providers, kept current by a kazoo ChildrenWatch.

    Read and used on the event loop only; the watch hands it each new list of children."""

    def __init__(self, interface: str, loop: asyncio.AbstractEventLoop, default_fail_s: float) -> None:
        self.interface = interface
        self._loop = loop
        self._default_fail_s = default_fail_s
        self._nodes: list[str] = []
        self._addresses: list[str] = []
        self._failed: dict[str, float] = {}  # address -> time.monotonic() when its mark ends
        self._next = 0
        self._loaded = asyncio.Event()
        self._changed = asyncio.Event()
        self._closed = False

    # -- the kazoo side (its threads) --------------------------------------------------------

    def _on_children(self, children: list[str]) -> bool | None:
        if self._closed:
            return False  # tells ChildrenWatch to stop
        try:
            self._loop.call_soon_threadsafe(self._update, list(children))
        except RuntimeError:  # the loop is closed: nobody is reading this view any more
            self._closed = True
            return False
        return None

    # -- the loop side -----------------------------------------------------------------------

    def _update(self, children: list[str]) -> None:
        self._nodes = sorted(children)
        # Two nodes may name one address (an instance restarted before its old session expired).
        self._addresses = sorted({a for a in (_address(unquote(c)) for c in children) if a})
        # A mark outlives nothing it marked: an address that left and comes back starts clean.
        self._failed = {a: t for a, t in self._failed.items() if a in self._addresses}
        self._loaded.set()
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def addresses(self) -> list[str]:
        """Every registered "host:port", sorted, marked ones included."""
        return list(self._addresses)

    @property
    def urls(self) -> list[str]:
        """The registered provider URLs, unquoted."""
        return [unquote(n) for n in self._nodes]

    def pick(self) -> str:
        """The next address round-robin, skipping the marked ones. When all are marked it picks
        among all: a mark is a guess, and trying a provider beats refusing the call outright."""
        if not self._addresses:
            raise ServiceUnavailable(f"no provider of {self.interface} is registered")
        now = time.monotonic()
        healthy = [a for a in self._addresses if self._failed.get(a, 0.0) <= now]
        choices = healthy or self._addresses
        address = choices[self._next % len(choices)]
        self._next += 1
        return address

    def mark_failed(self, address: str, for_s: float | None = None) -> None:
        """Skip `address` in pick() for `for_s` seconds (default: twice the session timeout, as long
        as a crashed provider's node can outlive it); the mark ends early when its node goes."""
        if address in self._addresses:
            self._failed[address] = time.monotonic() + (self._default_fail_s if for_s is None else for_s)

    async def wait_for(self, n: int, timeout_s: float = 10.0, *, exactly: bool = False) -> list[str]:
        """Wait until at least (or exactly) n addresses are registered; returns them."""

        def done() -> bool:
            return len(self._addresses) == n if exactly else len(self._addresses) >= n

        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    await self._changed.wait()
        except TimeoutError:
            wanted = f"{'exactly' if exactly else 'at least'} {n}"
            raise TimeoutError(f"{self.interface}: {self._addresses} after {timeout_s}s, wanted {wanted}") from None
        return self.addresses

    def close(self) -> None:
        self._closed = True  # the watch stops at its next event


class Discovered:
    """A gRPC client's Target (grpc_transport.Target): the providers of one interface, as the
    registry knows them now. The view is opened at the first call, on the running loop."""

    def __init__(self, registry: ZkRegistry, interface: str) -> None:
        self.registry = registry
        self.interface = interface
        self._view: Providers | None = None

    async def view(self) -> Providers:
        if self._view is None:
            self._view = await self.registry.providers(self.interface)
        return self._view

    async def pick(self) -> str:
        return (await self.view()).pick()

    def mark_failed(self, address: str) -> None:
        if self._view is not None:
            self._view.mark_failed(address)

    def live(self) -> list[str] | None:
        return None if self._view is None else self._view.addresses


class ZkRegistry:
    """One Zookeeper session: registers this process's providers and watches others'.

    session_timeout_s is what we ask for; the server clamps it to [2, 20] x its tickTime
    (4 s to 40 s with the default tickTime=2000)."""

    def __init__(
        self, hosts: str, root: str = "/dubbo", session_timeout_s: float = 6.0, connect_timeout_s: float = 10.0,
        *, auth: str | None = None,
    ) -> None:
        self.hosts = hosts
        self._auth = auth
        self.root = "/" + root.strip("/")
        self.session_timeout_s = session_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._zk: KazooClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mine: dict[str, bytes] = {}  # our ephemeral nodes and their data, to re-create after a lost session
        self._views: dict[str, Providers] = {}
        self._lock = asyncio.Lock()  # register, deregister and restore one at a time
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def client(self) -> KazooClient:
        if self._zk is None:
            raise RuntimeError("ZkRegistry is not started")
        return self._zk

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        zk = zk_client(
            self.hosts, self._auth,
            timeout=self.session_timeout_s,
            # kazoo retries a command forever by default: a call would hang while Zookeeper is down.
            command_retry={"max_tries": 5, "delay": 0.1, "max_delay": 1.0, "deadline": self.session_timeout_s},
            # Reconnecting is tried forever, which is what brings a lost session back, but kazoo's
            # back-off doubles up to an hour: a provider came back ~6 s after a 7 s outage, and
            # would come back an hour after a long one. At most a second between tries.
            connection_retry={"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 1.0},
        )
        zk.add_listener(self._on_state_threadsafe)
        try:
            await asyncio.to_thread(zk.start, self._connect_timeout_s)  # stops the client itself on failure
        except zk.handler.timeout_exception as exc:
            raise ConnectionError(f"Zookeeper at {self.hosts} did not answer in {self._connect_timeout_s}s") from exc
        self._zk = zk

    async def close(self) -> None:
        """Ends the session: the server drops our ephemeral nodes at once, and consumers see it."""
        if self._zk is None or self._closing:
            return
        self._closing = True
        for view in self._views.values():
            view.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        zk = self._zk
        await asyncio.to_thread(lambda: (zk.stop(), zk.close()))
        self._mine.clear()

    async def __aenter__(self) -> ZkRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def providers_path(self, interface: str) -> str:
        return f"{self.root}/{interface}/providers"

    # -- providers ---------------------------------------------------------------------------

    async def register(self, interface: str, address: str, *, protocol: str = "grpc", **params: Any) -> str:
        """Registers address ("host:port") as a provider of interface; returns the node's path.
        params become URL parameters (Dubbo's application, version, methods, ...)."""
        url = provider_url(interface, address, protocol, **params)
        path = f"{self.providers_path(interface)}/{quote(url, safe='')}"
        async with self._lock:
            await asyncio.to_thread(self._create_mine, path)
            self._mine[path] = b""
        return path

    async def deregister(self, path: str) -> None:
        async with self._lock:
            self._mine.pop(path, None)
            with contextlib.suppress(NoNodeError):
                await asyncio.to_thread(self.client.retry, self.client.delete, path)

    def _create_mine(self, path: str, data: bytes = b"") -> bool:
        """Create our ephemeral node unless this session has it already; True if created."""
        zk = self.client
        for _ in range(2):
            try:
                zk.retry(zk.create, path, data, ephemeral=True, makepath=True)
                return True
            except NodeExistsError:
                # Ours when a retried create had landed the first time, or when the connection
                # came back within the session; anyone else's is a real conflict.
                stat = zk.exists(path)
                if stat is None:
                    continue  # it went away in between: create it again
                session = zk.client_id
                if session is not None and stat.ephemeralOwner == session[0]:
                    return False
                raise
        raise NodeExistsError(path)

    # -- a lock ------------------------------------------------------------------------------

    async def hold(self, name: str, data: bytes) -> bytes | None:
        """Take the ephemeral node <root>/<name> with `data` for as long as this session lives (and
        again after a lost one, like a provider node): a lock its holder describes in `data`.
        Returns None once this session holds it; else the data of the session that does."""
        path = f"{self.root}/{name}"
        async with self._lock:
            try:
                await asyncio.to_thread(self._create_mine, path, data)
            except NodeExistsError:
                holder = await self.holder(name)
                if holder is None:  # released in between: try once more
                    await asyncio.to_thread(self._create_mine, path, data)
                else:
                    return holder
            self._mine[path] = data
        return None

    async def holder(self, name: str) -> bytes | None:
        """The data of <root>/<name> (what its holder wrote), or None when nobody holds it."""
        zk = self.client
        try:
            data, _ = await asyncio.to_thread(zk.retry, zk.get, f"{self.root}/{name}")
        except NoNodeError:
            return None
        return bytes(data)

    # -- consumers ---------------------------------------------------------------------------

    async def providers(self, interface: str) -> Providers:
        """The live view of interface's providers, already holding the current ones. One view per
        interface and registry; it lives until close()."""
        view = self._views.get(interface)
        if view is None:
            assert self._loop is not None, "ZkRegistry is not started"
            view = self._views[interface] = Providers(interface, self._loop, 2 * self.session_timeout_s)
            try:
                await asyncio.to_thread(self._watch, self.providers_path(interface), view)
            except BaseException:
                del self._views[interface]
                view.close()
                raise
        async with asyncio.timeout(self._connect_timeout_s):
            await view._loaded.wait()
        return view

    def _watch(self, path: str, view: Providers) -> None:
        zk = self.client
        zk.retry(zk.ensure_path, path)  # a ChildrenWatch on a missing node never fires; Dubbo makes it too
        # It re-reads the children after a reconnect or a lost session on its own.
        ChildrenWatch(zk, path, view._on_children)

    # -- session -----------------------------------------------------------------------------

    def _on_state_threadsafe(self, state: str) -> None:
        """kazoo's connection thread: must not block."""
        with contextlib.suppress(RuntimeError):  # the loop is closed
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._on_state, state)

    def _on_state(self, state: str) -> None:
        if self._closing:
            return
        if state == KazooState.LOST:
            log.warning("Zookeeper session lost: our %d provider nodes are gone until it is back", len(self._mine))
        elif state == KazooState.SUSPENDED:
            log.info("Zookeeper connection suspended; the session may still come back")
        elif state == KazooState.CONNECTED and self._mine:
            # After a lost session (a new one now) our ephemeral nodes died with the old one;
            # after a mere reconnect they are still there and _restore finds them.
            task = asyncio.create_task(self._restore())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _restore(self) -> None:
        async with self._lock:
            for path, data in sorted(self._mine.items()):
                if self._closing:
                    return
                try:
                    if await asyncio.to_thread(self._create_mine, path, data):
                        log.info("re-registered %s", path)
                except Exception:  # noqa: BLE001 - the next reconnect tries again
                    log.warning("could not re-register %s", path, exc_info=True)
