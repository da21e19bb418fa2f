"""The Grafana dashboard asks only for series the shop exports."""
import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import shop.infra.metrics  # noqa: F401 - defines the series

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "shop.json"


def test_every_series_the_dashboard_draws_exists() -> None:
    exported = {s.name for family in REGISTRY.collect() for s in family.samples}
    exported |= {f.name for f in REGISTRY.collect()}
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bshop_[a-z_]+", e)}
    assert used, "no shop series in the dashboard"
    for name in used:
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        assert name in exported or base in exported, f"{name} is not exported"
