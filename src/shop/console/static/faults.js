// Fault injection (only when the shop runs with SHOP_FAULTS=1): arm a fault at a named point, see
// what is armed, clear them all.
import { api } from "./api.js";
import { field, fill, h, say, table } from "./dom.js";

export async function faults(main) {
  const { points } = await api("/admin/faults");
  const armed = h("div");
  const form = h("form", { class: "filters", "aria-label": "Arm a fault" },
    field("Point", h("input", { name: "point", list: "points", required: true, maxlength: 100 })),
    h("datalist", { id: "points" }, points.map((p) => h("option", { value: p }))),
    field("Action", h("select", { name: "action" }, ["error", "delay", "crash"].map((a) => h("option", { value: a }, a)))),
    field("Times (empty: until cleared)", h("input", { name: "times", type: "number", min: 1 })),
    field("Delay (ms)", h("input", { name: "delayMs", type: "number", min: 0, value: 0 })),
    h("button", { type: "submit" }, "Arm"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = form.elements;
    try {
      await api("/admin/faults", { method: "POST", body: {
        point: f.point.value.trim(), action: f.action.value,
        times: f.times.value ? Number(f.times.value) : null, delayMs: Number(f.delayMs.value || 0) } });
      say(`Armed ${f.action.value} at ${f.point.value}.`);
    } catch (err) {
      say(`Not armed: ${err.message}`);
    }
    await refresh();
  });
  const clear = h("button", { type: "button" }, "Clear all faults");
  clear.addEventListener("click", async () => {
    await api("/admin/faults", { method: "DELETE" });
    say("Every fault cleared.");
    await refresh();
  });
  async function refresh() {
    const list = (await api("/admin/faults")).armed;
    fill(armed, table("Armed here", ["Point", "Action", "Times left", "Delay (ms)"],
      list.map((f) => [f.point, f.action, f.times === null ? "until cleared" : String(f.times), String(f.delayMs)]),
      "nothing armed."), clear);
  }
  fill(main, h("h2", {}, "Fault injection"),
    h("p", { class: "note warn" }, "For staging and tests: a “crash” ends the process that reaches the point."), form, armed);
  await refresh();
}
