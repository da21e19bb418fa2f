// The audit: whether stock, balances, coupons, points and payments agree with the orders. A
// violation is a sentence; where it names an order ("order 123…", or a message's key on the order
// and pay topics, which is the order id) the order's id links to its timeline.
import { api } from "./api.js";
import { fill, h, orderLink } from "./dom.js";

const ORDER_ID = /\b(order |(?:order|pay)\/\w+ )(\d+)/g;

export function linked(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(ORDER_ID)) {
    const at = m.index + m[1].length;
    out.push(text.slice(last, at), orderLink(m[2]));
    last = at + m[2].length;
  }
  out.push(text.slice(last));
  return out;
}

export async function audit(main, ctx) {
  const body = h("div");
  fill(main, h("h2", {}, "Audit"), body);
  async function refresh() {
    const a = await api("/admin/audit");
    fill(body,
      h("p", { class: `verdict ${a.consistent ? "ok" : "bad"}` },
        a.consistent ? "Consistent" : `${a.violations.length} violation${a.violations.length > 1 ? "s" : ""}`),
      h("p", {}, `Work in flight: ${a.pending}.`),
      a.violations.length ? h("ul", { class: "violations" }, a.violations.map((v) => h("li", {}, linked(v)))) : null,
      h("p", { class: "updated" }, `Checked ${new Date().toISOString().slice(11, 19)} UTC; again every 15 s.`));
  }
  await refresh();
  ctx.every(15000, refresh);
}
