// Messages an operator acts on: parked dead after their retries ran out (Replay sends one back to
// its consumer group), and waiting in back-off (Retry now tries one at once). Polled every 5 s.
import { api } from "./api.js";
import { failure, fill, h, orderLink, say, table, time } from "./dom.js";

// Message keys of the shop's topics (order, pay) are order ids.
const key = (m) => (/^\d+$/.test(m.key) ? orderLink(m.key) : m.key);

export async function messages(main, ctx) {
  const dead = h("section", { "aria-labelledby": "dead-title" });
  const waiting = h("section", { "aria-labelledby": "waiting-title" });
  fill(main, h("h2", {}, "Messages"), dead, waiting);

  async function replay(m, button, verb) {
    button.disabled = true;
    try {
      await api(`/admin/messages/${encodeURIComponent(m.id)}/replay`, { method: "POST" });
      say(`${verb}: message ${m.id} (${m.topic}/${m.tag} for ${m.group}).`);
    } catch (err) {
      say(`Message ${m.id}: ${err.message}`);
    }
    await refresh();
  }
  const button = (m, label, verb) => {
    const b = h("button", { type: "button", "aria-label": `${label} message ${m.id}` }, label);
    b.addEventListener("click", () => replay(m, b, verb));
    return b;
  };

  async function refresh() {
    try {
      const [d, w] = await Promise.all([api("/admin/messages?state=dead"), api("/admin/messages?state=retrying")]);
      fill(dead, h("h3", { id: "dead-title" }, `Dead (${d.length})`), table("Parked after their retries ran out",
        ["Id", "Group", "Topic / tag", "Order", "Attempts", "Last error", "Parked", ""],
        d.map((m) => [m.id, h("span", { class: "nowrap" }, m.group), `${m.topic}/${m.tag}`, key(m), String(m.attempts), m.lastError ?? "",
          time(m.parkedAt), button(m, "Replay", "Replayed")]), "no dead message."));
      fill(waiting, h("h3", { id: "waiting-title" }, `Waiting in back-off (${w.length})`),
        table("Waiting for their next try", ["Id", "Group", "Topic / tag", "Order", "Attempts", "Last error",
          "Next try", ""], w.map((m) => [m.id, h("span", { class: "nowrap" }, m.group), `${m.topic}/${m.tag}`, key(m), String(m.attempts),
          m.lastError ?? "", time(m.nextAttemptAt), button(m, "Retry now", "Retried")]), "none waiting."));
    } catch (err) {
      fill(dead, failure(err));
    }
  }
  await refresh();
  ctx.every(5000, refresh);
}
