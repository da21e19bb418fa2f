// Orders with search and filters: GET /admin/orders, newest first, a keyset page at a time. The
// filters live in the URL (#orders?status=2&…), so a search can be linked to and gone back to.
import { api, query } from "./api.js";
import { ORDER_STATUS, PAY_STATUS, field, fill, h, orderLink, table, time } from "./dom.js";

const FILTERS = ["userId", "status", "payStatus", "from", "to", "limit", "cursor"];

function select(name, names, value) {
  return h("select", { name }, h("option", { value: "" }, "any"),
    names.map((n, i) => h("option", { value: String(i), selected: value === String(i) }, `${i} ${n}`)));
}

// datetime-local is the operator's local time; the API takes ISO 8601 with a zone.
const toIso = (local) => (local ? new Date(local).toISOString() : "");
const toLocal = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

export async function orders(main, ctx) {
  const p = Object.fromEntries(FILTERS.map((k) => [k, ctx.params.get(k) || ""]));
  const find = h("form", { class: "find", role: "search", "aria-label": "Open an order" },
    field("Order id", h("input", { name: "orderId", inputmode: "numeric", pattern: "[0-9]+", required: true })),
    h("button", { type: "submit" }, "Open timeline"));
  find.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#order/${find.orderId.value.trim()}`;
  });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter orders" },
    field("User id", h("input", { name: "userId", value: p.userId, inputmode: "numeric", pattern: "[0-9]+" })),
    field("Status", select("status", ORDER_STATUS, p.status)),
    field("Pay status", select("payStatus", PAY_STATUS, p.payStatus)),
    field("Created from", h("input", { name: "from", type: "datetime-local", value: toLocal(p.from) })),
    field("Created before", h("input", { name: "to", type: "datetime-local", value: toLocal(p.to) })),
    field("Per page", h("input", { name: "limit", type: "number", min: 1, max: 100, value: p.limit || 20 })),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = form.elements;
    location.hash = `#orders${query({
      userId: f.userId.value.trim(), status: f.status.value, payStatus: f.payStatus.value,
      from: toIso(f.from.value), to: toIso(f.to.value), limit: f.limit.value,
    })}`;
  });
  const page = await api(`/admin/orders${query(p)}`);
  const rows = page.items.map((o) => [
    orderLink(o.orderId), o.userId, `${o.orderStatus} ${ORDER_STATUS[o.orderStatus]}`,
    `${o.payStatus} ${PAY_STATUS[o.payStatus] ?? ""}`, o.orderAmount, o.payAmount, time(o.addTime)]);
  const next = page.nextCursor
    ? h("a", { class: "button", href: `#orders${query({ ...p, cursor: page.nextCursor })}` }, "Next page")
    : null;
  const first = p.cursor ? h("a", { class: "button", href: `#orders${query({ ...p, cursor: "" })}` }, "First page") : null;
  fill(main, h("h2", {}, "Orders"), find, form,
    table("Orders, newest first", ["Order", "User", "Status", "Pay status", "Amount", "To pay", "Created"], rows,
      "no order matches."),
    h("p", { class: "pages" }, first, next));
}
