"""The operator's console (GET /console): plain HTML, JS modules and CSS in static/, no build step.
The chart library comes from npm (package.json here, pinned by package-lock.json, installed by
`make setup` with `npm ci`) and is served from node_modules: nothing is loaded from another host."""
from pathlib import Path

HERE = Path(__file__).parent
STATIC = HERE / "static"
UPLOT = HERE / "node_modules" / "uplot" / "dist"
