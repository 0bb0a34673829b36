// The console's only way to the control plane: the public /api/v2, as any API client, with the session cookie.
export const session = { user: null, csrf: null };
const signedOutListeners = new Set();
const cached = new Map(); // path -> {etag, data}: polling sends If-None-Match and reuses the data on a 304

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `the API answered ${status}`);
    this.status = status;
    this.code = body?.error;
    this.details = body?.details || {};
  }
}

export function onSignedOut(listener) {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

export async function api(method, path, body, { poll = false, text = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  // What the console shows should be true now: the list's liveness columns then come fresh (gateway's
  // fleet_status_fresh_seconds) instead of from the few seconds' cache other API clients are served.
  if (method === "GET") headers["Cache-Control"] = "max-age=0";
  const known = poll && cached.get(path);
  if (known) headers["If-None-Match"] = known.etag;
  const response = await fetch(`/api/v2${path}`, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 304 && known) return known.data;
  if (response.status === 401 && path !== "/session") {
    session.user = session.csrf = null;
    signedOutListeners.forEach((listener) => listener());
  }
  if (!response.ok) {
    let answer = null;
    try { answer = await response.json(); } catch { /* not JSON: a proxy's page */ }
    throw new ApiError(response.status, answer);
  }
  if (response.status === 204) return null;
  const data = text ? await response.text() : await response.json();
  if (poll && response.headers.get("ETag")) cached.set(path, { etag: response.headers.get("ETag"), data });
  return data;
}

export async function signIn(name, password) {
  const answer = await api("POST", "/session", { name, password });
  Object.assign(session, { user: answer.user, csrf: answer.csrf_token });
  return answer.user;
}

export async function whoAmI() {
  const answer = await api("GET", "/session");
  Object.assign(session, { user: answer.user, csrf: answer.csrf_token });
  return answer.user;
}

export async function signOut() {
  await api("DELETE", "/session");
  session.user = session.csrf = null;
}

// What the signed-in user's role lets them try; the API still decides every call.
export const can = {
  operate: () => ["operator", "admin"].includes(session.user?.role),
  administer: () => session.user?.role === "admin",
};

export function query(params) {
  const pairs = Object.entries(params).filter(([, value]) => value !== "" && value !== undefined && value !== null);
  return pairs.length ? `?${new URLSearchParams(pairs)}` : "";
}

export async function download(path, filename) {
  // Through fetch, so the session cookie and the API's errors apply; then handed to the browser as a file.
  const response = await fetch(`/api/v2${path}`, { credentials: "same-origin" });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
}
