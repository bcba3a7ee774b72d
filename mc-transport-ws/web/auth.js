// Sign-in, token refresh and sign-out against the relay's HTTP API, shared by the chat page and
// the admin console. Tokens are kept in sessionStorage under a key of the page's own.

export const API = "/api/v1";

function tokensFrom(body) {
  return {
    access: body.access_token,
    refresh: body.refresh_token,
    expiresAt: Date.now() + (body.expires_in || 900) * 1000,
    role: body.user?.role,
  };
}

async function post(path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(`${API}${path}`, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await r.json().catch(() => ({}));
  return { r, answer };
}

/** The tokens a page keeps under `key`. */
export class Tokens {
  constructor(key) {
    this.key = key;
    this.current = JSON.parse(window.sessionStorage.getItem(key) || "null");
    this.timer = null;
    this.onRefreshed = () => {};
    this.onEnded = () => {};
  }

  get access() {
    return this.current?.access;
  }

  set(tokens) {
    this.current = tokens;
    clearTimeout(this.timer);
    if (tokens) {
      window.sessionStorage.setItem(this.key, JSON.stringify(tokens));
      // A minute before expiry (or halfway for short-lived tokens).
      const left = tokens.expiresAt - Date.now();
      this.timer = setTimeout(() => this.refresh(), Math.max(1000, Math.min(left - 60000, left / 2)));
    } else {
      window.sessionStorage.removeItem(this.key);
    }
  }

  /** Signs in; returns an error message, or null. */
  async signIn(organization, username, password) {
    const body = { username, password };
    if (organization) body.organization = organization;
    try {
      const { r, answer } = await post("/auth/login", body);
      if (!r.ok) return answer?.error?.message || `Sign-in failed (${r.status})`;
      this.set(tokensFrom(answer));
      return null;
    } catch {
      return "The relay cannot be reached.";
    }
  }

  /** Rotates the tokens; true when it worked. A refused refresh ends the session. */
  async refresh() {
    if (!this.current) return false;
    try {
      const { r, answer } = await post("/auth/refresh", { refresh_token: this.current.refresh });
      if (r.status === 401 || r.status === 403) {
        this.set(null);
        this.onEnded("Your session ended; sign in again.");
        return false;
      }
      if (!r.ok) throw new Error(String(r.status));
      this.set({ ...tokensFrom(answer), role: answer.user?.role || this.current?.role });
      this.onRefreshed(this.current.access);
      return true;
    } catch {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.refresh(), 5000);
      return false;
    }
  }

  /** Forgets the tokens and revokes them at the relay. */
  signOut() {
    const refresh = this.current?.refresh;
    this.set(null);
    if (refresh) post("/auth/logout", { refresh_token: refresh }).catch(() => {});
  }

  /** A JSON API call with the access token; throws an Error with the relay's message. */
  async api(method, path, body) {
    const headers = { Authorization: `Bearer ${this.access}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(`${API}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 204) return null;
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(answer?.error?.message || `${method} ${path}: ${r.status}`);
    return answer;
  }
}

/** The `/ws/chat` URL of this origin. */
export function socketUrl() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws/chat`;
}
