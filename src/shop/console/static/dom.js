// Elements built from data: text always goes in as text (never as HTML), so a message's error or
// an address cannot inject markup into the operator's page.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c);
  return el;
}

// An element's children replaced; absent parts (null, false) are left out, not written as "null".
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

export const ORDER_STATUS = ["unconfirmed", "confirmed", "cancelled", "invalid", "refunded"];
export const PAY_STATUS = ["unpaid", "paying", "paid"];

// Times are shown in UTC, as the shop keeps them, to the millisecond where steps are that close.
export const time = (iso, ms = false) => (iso
  ? `${iso.replace("T", " ").replace(ms ? /Z$/ : /\.\d+Z$|Z$/, "")} UTC` : "–");
export const clock = (iso) => (iso ? iso.slice(11, 23) : "");

export function say(text) {
  document.getElementById("status").textContent = text;
}

export function table(caption, head, rows, empty = "None.") {
  if (!rows.length) return h("p", { class: "empty" }, `${caption}: ${empty}`);
  return h("table", {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

// A form field: its label names it (for a screen reader, and for a test's get_by_label) and nothing else.
export function field(label, input) {
  if (!input.id) input.id = `field-${input.name}`;
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
}

export const orderLink = (id) => h("a", { href: `#order/${id}` }, id);

export function failure(err) {
  return h("p", { class: "error", role: "alert" }, `${err.message}${err.code ? ` (${err.code})` : ""}`);
}
