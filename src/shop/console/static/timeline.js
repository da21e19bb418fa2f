// An order's timeline: every fact from every service in time order, drawn as steps across one lane
// per service, so a compensation stands out: steps undone in amber, barriers (a compensation that
// found nothing to undo) dashed in purple, a message parked dead in red. The table below has each
// step's details.
import { api } from "./api.js";
import { ORDER_STATUS, PAY_STATUS, clock, fill, h, table, time } from "./dom.js";

const LANES = ["order", "goods", "coupon", "user", "pay", "log"];

// What a step is, for its colour and its name in the legend.
export function tone(kind) {
  if (kind === "barrier") return "barrier";
  if (kind === "message.dead") return "dead";
  if (kind.startsWith("message.")) return "message";
  if (/(restored|refunded|removed|\.cancelled)$/.test(kind)) return "undo";
  return "do";
}
const LEGEND = { do: "step", undo: "compensation", barrier: "barrier", message: "message", dead: "dead message" };

// A step's few words in its lane (the ids are in the table below).
function summary(d) {
  const parts = [];
  if (d.group) parts.push(d.group.replace(/-group$/, ""));
  if (d.tag) parts.push(d.tag);
  for (const k of ["amount", "points", "attempts"]) if (d[k] !== undefined && d[k] !== null) parts.push(`${k} ${d[k]}`);
  return parts.join(" · ");
}

// The lanes: a row per service, a column per step, in time order.
function lanesOf(events) {
  const lanes = [...LANES, ...new Set(events.map((e) => e.service).filter((s) => !LANES.includes(s)))];
  const grid = h("ol", {
    class: "lanes", style: `--steps: ${events.length}; --lanes: ${lanes.length}`,
    "aria-label": `${events.length} steps in time order`,
  });
  lanes.forEach((lane, row) => {
    // A band across the lane, behind its steps, and the lane's name at its start.
    grid.append(h("li", { class: "band", "aria-hidden": "true", style: `grid-row: ${row + 1}` }),
      h("li", { class: "lane-name", "aria-hidden": "true", style: `grid-row: ${row + 1}` }, lane));
  });
  events.forEach((e, i) => {
    const name = e.kind.startsWith(`${e.service}.`) ? e.kind.slice(e.service.length + 1)
      : e.kind.replace(/^message\./, "message ");
    const words = name.replaceAll("_", " ");  // "stock reduced" wraps in a narrow column
    grid.append(h("li", {
      class: `step ${tone(e.kind)}`, style: `grid-row: ${lanes.indexOf(e.service) + 1}; grid-column: ${i + 2}`,
      title: `${e.service}: ${e.kind} at ${time(e.at, true)}`, "data-kind": e.kind,
    }, h("span", { class: "sr" }, `${i + 1}. ${e.service}: `), h("b", {}, words), h("small", {}, clock(e.at)),
    h("small", {}, summary(e.detail))));
  });
  return grid;
}

export async function timeline(main, ctx) {
  const id = ctx.args[0];
  const [order, data] = await Promise.all([api(`/admin/orders/${encodeURIComponent(id)}`),
    api(`/admin/orders/${encodeURIComponent(id)}/timeline`)]);
  const events = data.events;
  // Messages sent and handled are half the steps of an order: they can leave the lanes (not the table).
  const toggle = h("input", { type: "checkbox", checked: true });
  const box = h("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": "Steps across the services" });
  const draw = () => fill(box, lanesOf(toggle.checked ? events : events.filter((e) => tone(e.kind) !== "message")));
  toggle.addEventListener("change", draw);
  draw();
  const undone = events.filter((e) => ["undo", "barrier"].includes(tone(e.kind))).length;
  const dead = events.some((e) => e.kind === "message.dead");
  fill(main,
    h("h2", {}, `Order ${order.orderId}`),
    h("dl", { class: "facts" }, [
      ["Status", `${order.orderStatus} ${ORDER_STATUS[order.orderStatus]}`],
      ["Pay status", `${order.payStatus} ${PAY_STATUS[order.payStatus] ?? ""}`],
      ["User", order.userId], ["Amount", order.orderAmount], ["To pay", order.payAmount],
      ["Created", time(order.addTime)]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    undone || dead ? h("p", { class: `note ${dead ? "bad" : "warn"}` },
      undone ? `${undone} compensation step${undone > 1 ? "s" : ""}.` : "",
      dead ? h("span", {}, " A message for this order is parked dead: ", h("a", { href: "#messages" }, "replay it"), ".")
        : "") : null,
    // The order's lines (a cart's, or the original's one goods): each line's stock is a goods step below.
    table("Lines", ["Goods", "Units", "Price", "Amount"], (order.items ?? []).map((l) => [
      l.goodsId, String(l.goodsNumber), l.goodsPrice, l.goodsAmount])),
    h("ul", { class: "legend", "aria-label": "Legend" },
      Object.entries(LEGEND).map(([t, label]) => h("li", { class: `step ${t}` }, label)),
      h("li", {}, h("label", {}, toggle, " messages sent and handled in the lanes"))),
    box,
    table("Every step", ["#", "At", "Service", "Kind", "Detail"], events.map((e, i) => [
      String(i + 1), h("span", { class: "nowrap" }, time(e.at, true)), e.service,
      h("span", { class: `tag ${tone(e.kind)}` }, e.kind),
      h("code", {}, JSON.stringify(e.detail))])),
    h("p", {}, h("a", { href: "#orders" }, "All orders")));
}
