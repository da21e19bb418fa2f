"""What the holder of a cluster's name lock (an ephemeral Zookeeper node, see cluster.py) writes
about itself, the sentence whoever finds the lock taken reads, and the registry session it is held in."""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shop.infra.registry import ZkRegistry


def session(env: Mapping[str, str], timeout_s: float = 6.0) -> ZkRegistry:
    """A registry session as the cluster's processes have theirs (`env`: ClusterConfig.environment),
    credential included: the supervisor's lock, a purge, the wait until every process registered."""
    from shop.infra.registry import ZkRegistry

    return ZkRegistry(env["SHOP_REGISTRY_URL"], env["SHOP_REGISTRY_ROOT"], timeout_s,
                      auth=env.get("SHOP_REGISTRY_AUTH"))


def lock_data(config: Any, command: str) -> bytes:
    """What the holder of a cluster's lock says about itself, for whoever finds it taken."""
    return json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                       "url": f"http://{config.host}:{config.port}", "dataDir": str(config.data_dir.resolve()),
                       "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()


def held_by(name: str, data: bytes) -> str:
    """A sentence about the process holding cluster `name`'s lock (from lock_data)."""
    try:
        h = json.loads(data)
        return (f"cluster {name!r} is held by `{h['command']}` (pid {h['pid']} on {h['host']}, "
                f"{h['url']}, data dir {h['dataDir']}, since {h['since']})")
    except (ValueError, KeyError, TypeError):
        return f"cluster {name!r} is held by another process ({data[:200]!r})"
