// The overview: orders per minute by outcome (a chart), compensations, pending work and dead
// messages (as cards, and a chart of this page's readings), and the audit. The overview is cheap and polled every 5 s; the audit reads every service's data,
// so it is asked for every 30 s.
import { api } from "./api.js";
import { chart } from "./chart.js";
import { failure, fill, h } from "./dom.js";

const MINUTES = 60;

function card(label, value, { href, tone } = {}) {
  const body = [h("span", { class: "label" }, label), h("span", { class: "value" }, String(value))];
  return h("li", { class: `card ${tone || ""}` }, href ? h("a", { href }, body) : body);
}

export async function overview(main, ctx) {
  const cards = h("ul", { class: "cards", "aria-label": `The last ${MINUTES} minutes` });
  const auditCard = h("div");
  const plot = h("figure", { class: "chart" });
  const work = h("figure", { class: "chart" });
  const updated = h("p", { class: "updated" });
  fill(main, h("h2", {}, "Overview"), cards, plot, work, auditCard, updated);
  const draw = await chart(plot, `Orders per minute, last ${MINUTES} minutes (UTC)`, [
    { label: "confirmed", tone: "ok" }, { label: "failed", tone: "bad" }]);
  // Pending work and dead messages are states, not counts per minute: drawn from this page's own
  // readings (every 5 s, the last 30 minutes of them), so they start when the page opens.
  const drawWork = await chart(work, "Pending work and dead messages, every 5 s since this page opened (UTC)", [
    { label: "pending", tone: "info" }, { label: "dead", tone: "bad" }, { label: "compensations", tone: "warn" }],
  { lines: true, step: 5, unit: "count" });
  const samples = { at: [], pending: [], dead: [], compensations: [] };

  let auditState = null;
  async function refresh() {
    const o = await api(`/admin/overview?minutes=${MINUTES}`);
    fill(cards,
      card("Orders confirmed", o.confirmed, { tone: "ok" }),
      card("Orders failed", o.failed, { tone: o.failed ? "bad" : "" }),
      card("Compensations", o.compensations, { tone: o.compensations ? "warn" : "" }),
      card("Pending work", o.pending),
      card("Dead messages", o.dead, { href: "#messages", tone: o.dead ? "bad" : "" }),
      auditState);
    draw(o.perMinute.map((m) => Date.parse(m.at) / 1000),
      [o.perMinute.map((m) => m.confirmed), o.perMinute.map((m) => m.failed)]);
    for (const [key, value] of [["at", Date.now() / 1000], ["pending", o.pending], ["dead", o.dead],
      ["compensations", o.compensations]]) {
      samples[key].push(value);
      if (samples[key].length > 360) samples[key].shift();
    }
    drawWork(samples.at, [samples.pending, samples.dead, samples.compensations]);
    updated.textContent = `Updated ${new Date().toISOString().slice(11, 19)} UTC; every 5 s.`;
  }
  async function refreshAudit() {
    try {
      const a = await api("/admin/audit");
      auditState = card("Audit", a.consistent ? "consistent"
        : `${a.violations.length} violation${a.violations.length === 1 ? "" : "s"}`,
        { href: "#audit", tone: a.consistent ? "ok" : "bad" });
      fill(auditCard);
    } catch (err) {
      fill(auditCard, failure(err));
    }
  }
  await refreshAudit();
  await refresh();
  ctx.every(5000, refresh);
  ctx.every(30000, refreshAudit);
}
