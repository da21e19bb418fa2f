// Charts with uPlot, installed from npm and served by the shop from node_modules. Without it (the
// set-up's `npm ci` not run) the page still shows its numbers, and says why the chart is missing.
import { fill, h } from "./dom.js";

let uPlot = null;
try {
  uPlot = (await import("/console/vendor/uplot/uPlot.esm.js")).default;
} catch {
  uPlot = null;
}

const COLOURS = { ok: "#1a7f37", bad: "#cf222e", warn: "#9a6700" };

// A bar chart of several series side by side over time (x: epoch seconds); returns draw(xs, ys).
export async function chart(figure, title, series) {
  const caption = h("figcaption", {}, title);
  if (!uPlot) {
    fill(figure, caption, h("p", { class: "error" }, "The chart library is not installed: run `make setup` (npm ci)."));
    return () => {};
  }
  const box = h("div", { role: "img", "aria-label": `${title}: bars of ${series.map((s) => s.label).join(" and ")}` });
  fill(figure, caption, box);
  const bars = (align) => uPlot.paths.bars({ size: [0.4, 24], align });
  const opts = {
    width: Math.max(figure.clientWidth, 320), height: 260,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    // Half a step of room each side, so the first and the last minute's bars are drawn whole.
    scales: { x: { range: (u, min, max) => [min - 45, max + 45] }, y: { range: (u, min, max) => [0, Math.max(4, max)] } },
    axes: [{ values: (u, splits) => splits.map((s) => new Date(s * 1000).toISOString().slice(11, 16)) },
      { label: "orders", values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? v : "")) }],
    series: [{ label: "minute" }, ...series.map((s, i) => ({
      label: s.label, stroke: COLOURS[s.tone], fill: `${COLOURS[s.tone]}cc`, width: 1,
      paths: bars(i === 0 ? -1 : 1), points: { show: false },
    }))],
  };
  let plot = null;
  new ResizeObserver(() => plot?.setSize({ width: Math.max(figure.clientWidth, 320), height: 260 })).observe(figure);
  return (xs, ys) => {
    if (!plot) plot = new uPlot(opts, [xs, ...ys], box);
    else plot.setData([xs, ...ys]);
  };
}
