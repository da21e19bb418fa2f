// The admin API as the console calls it: the token rides in the Authorization header, every answer
// is the shop's Result envelope. The token is kept for this tab only (sessionStorage).
const KEY = "shop.adminToken";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// Called on a 401 from any page: the console goes back to its sign-in.
let onUnauthorized = () => {};
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export async function api(path, { method = "GET", body, as } = {}) {
  const headers = { Authorization: `Bearer ${as ?? token.get() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let env = null;
  try { env = await r.json(); } catch { /* not an envelope: said below by the status */ }
  if (r.status === 401 && as === undefined) onUnauthorized();
  if (!r.ok || !env || !env.success) throw new ApiError(r.status, env?.code, env?.message);
  return env.data;
}

export const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
};
