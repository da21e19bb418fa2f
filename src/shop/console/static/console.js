// The console's shell: sign-in, the pages' navigation (the URL's hash names the page, so the back
// button and links work) and polling that stops when the page is left.
import { ApiError, api, token, whenUnauthorized } from "./api.js";
import { failure, fill, h, say } from "./dom.js";
import { audit } from "./audit.js";
import { faults } from "./faults.js";
import { messages } from "./messages.js";
import { orders } from "./orders.js";
import { overview } from "./overview.js";
import { timeline } from "./timeline.js";

const PAGES = { overview, orders, order: timeline, messages, audit, faults };
const main = document.getElementById("main");
const nav = document.querySelector("header nav");
let timers = [];

// What a page is given: its own element to draw in (a page still loading when another is opened
// draws into one no longer shown), its arguments, and `every` to poll while it is shown.
function context(view, args, params) {
  return {
    args, params,
    every(ms, fn) {
      const t = setInterval(() => (view.isConnected ? fn().catch(() => {}) : clearInterval(t)), ms);
      timers.push(t);
    },
  };
}

function route() {
  timers.forEach(clearInterval);
  timers = [];
  say("");  // what the last page said is about that page
  if (!token.get()) return signIn();
  const [path, search] = location.hash.slice(1).split("?");
  const [name, ...args] = path.split("/");
  const page = PAGES[name] ? name : "overview";
  for (const a of nav.querySelectorAll("a")) {
    const here = a.getAttribute("href") === `#${page === "order" ? "orders" : page}`;
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  nav.hidden = false;
  const view = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  fill(main, view);
  PAGES[page](view, context(view, args.map(decodeURIComponent), new URLSearchParams(search || "")))
    .catch((err) => fill(view, failure(err)));  // after a 401 the view is gone: the sign-in stays
}

// Why the console asks to sign in again (a token the shop stopped taking), kept until a sign-in
// succeeds: navigating meanwhile must not lose it.
let note = "";

function signIn(message = note) {
  nav.hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const form = h("form", { class: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h2", { id: "sign-in-title" }, "Sign in"),
    h("label", { for: "token" }, "Admin token (SHOP_ADMIN_TOKEN)"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/admin/overview?minutes=1", { as: input.value });  // the cheapest admin call
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401
        ? "The shop refused this token." : `The shop did not answer: ${err.message}`;
      input.focus();
      return;
    }
    token.set(input.value);
    note = "";
    await showFaultsIfOn();
    if (!location.hash || location.hash === "#signin") location.hash = "#overview"; else route();
  });
  fill(main, form);
  input.focus();
}

// Fault injection exists only when SHOP_FAULTS=1: otherwise its endpoint is a 404, and the page is hidden.
async function showFaultsIfOn() {
  let on = false;
  try { await api("/admin/faults"); on = true; } catch { on = false; }
  nav.querySelector("[data-faults]").hidden = !on;
}

document.getElementById("sign-out").addEventListener("click", () => {
  token.clear();
  say("Signed out.");
  route();
});
whenUnauthorized(() => {
  token.clear();
  timers.forEach(clearInterval);
  note = "The shop refused the token: sign in again.";
  signIn();
});
window.addEventListener("hashchange", () => { route(); main.focus({ preventScroll: true }); });
if (token.get()) showFaultsIfOn();
route();
