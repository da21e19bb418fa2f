// Charts with uPlot, installed from npm and served by the shop from node_modules. Without it (the
// set-up's `npm ci` not run) the page still shows its numbers, and says why the chart is missing.
import { fill, h } from "./dom.js";

let uPlot = null;
try {
  uPlot = (await import("/console/vendor/uplot/uPlot.esm.js")).default;
} catch {
  uPlot = null;
}

const COLOURS = { ok: "#1a7f37", bad: "#cf222e", warn: "#9a6700", info: "#0969da" };

// A chart of several series over time (x: epoch seconds): bars side by side, or with `lines`
// lines (for samples rather than counts per minute); returns draw(xs, ys).
export async function chart(figure, title, series, { lines = false, step = 60, unit = "orders" } = {}) {
  const caption = h("figcaption", {}, title);
  if (!uPlot) {
    fill(figure, caption, h("p", { class: "error" }, "The chart library is not installed: run `make setup` (npm ci)."));
    return () => {};
  }
  const box = h("div", { role: "img", "aria-label": `${title}: bars of ${series.map((s) => s.label).join(" and ")}` });
  fill(figure, caption, box);
  const bars = (align) => uPlot.paths.bars({ size: [0.4, 24], align });
  const pad = lines ? 30 : step * 0.75;  // readings: at least a minute of axis, in whole seconds
  const opts = {
    width: Math.max(figure.clientWidth, 320), height: 260,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    // Room each side of the data, so the first and the last minute's bars are drawn whole; read
    // from the data (with one reading, uPlot's own min and max give no span to draw in).
    scales: { x: { range: (u) => [u.data[0][0] - pad, u.data[0][u.data[0].length - 1] + pad] },
      y: { range: (u, min, max) => [0, Math.max(4, max)] } },
    axes: [{ values: (u, splits) => splits.map((s) => new Date(s * 1000).toISOString().slice(11, lines ? 19 : 16)) },
      { label: unit, values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? v : "")) }],
    series: [{ label: lines ? "time" : "minute" }, ...series.map((s, i) => ({
      label: s.label, stroke: COLOURS[s.tone], width: lines ? 2 : 1,
      ...(lines ? {} : { fill: `${COLOURS[s.tone]}cc`, paths: bars(i === 0 ? -1 : 1) }),
      points: { show: lines },
    }))],
  };
  let plot = null;
  new ResizeObserver(() => plot?.setSize({ width: Math.max(figure.clientWidth, 320), height: 260 })).observe(figure);
  return (xs, ys) => {
    if (!plot) plot = new uPlot(opts, [xs, ...ys], box);
    else plot.setData([xs, ...ys]);
  };
}
