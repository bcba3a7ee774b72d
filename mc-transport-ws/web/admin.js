// Mission Control's admin console: gateways (live status and metrics pushed by the admin
// event subscription, no polling), agents, users (create, suspend, assign, their sessions and messages),
// registration tokens (created and shown once, revoked), gateways the relay dials, and the
// activity feed (live). Tokens live in sessionStorage under a key of their own; every server
// string is put in the page as text.

import { Tokens, socketUrl } from "./auth.js";

const $ = (id) => document.getElementById(id);
const tokens = new Tokens("mc.admin.tokens");
const state = { gateways: [], agents: [], users: [], ws: null, attempt: 0, stopped: false, timer: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "on") for (const [event, f] of Object.entries(v)) node.addEventListener(event, f);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

function fail(e) {
  $("console-error").textContent = e.message || String(e);
}

async function call(method, path, body) {
  $("console-error").textContent = "";
  return tokens.api(method, path, body);
}

// ---- sign-in ---------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  $("signin-error").textContent = "";
  const failed = await tokens.signIn($("organization").value.trim(), $("username").value.trim(), $("password").value);
  if (failed) {
    $("signin-error").textContent = failed;
    return;
  }
  if (tokens.current.role !== "admin") {
    tokens.signOut();
    $("signin-error").textContent = "This console is for admins.";
    return;
  }
  $("password").value = "";
  start();
}

function signOut(message) {
  state.stopped = true;
  tokens.signOut();
  clearTimeout(state.timer);
  if (state.ws) state.ws.close(1000);
  state.ws = null;
  $("console").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

tokens.onRefreshed = (access) => send({ type: "auth", id: `extend-${Date.now()}`, payload: { token: access } });
tokens.onEnded = (message) => signOut(message);

// ---- live events -----------------------------------------------------------------------------

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
}

function connect() {
  state.stopped = false;
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  $("connection").textContent = state.attempt ? "reconnecting…" : "connecting…";
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", payload: { token: tokens.access } }));
  ws.onmessage = (e) => {
    let frame;
    try {
      frame = JSON.parse(e.data);
    } catch {
      return;
    }
    if (frame.type === "auth_ok") {
      state.attempt = 0;
      send({ type: "subscribe", id: "live", payload: { topics: ["gateway.status", "gateway.metrics", "agent.status", "activity", "session.created"] } });
      // Anything that happened while the socket was down.
      loadAll();
    } else if (frame.type === "error" && frame.id === "live") {
      fail(new Error(frame.payload.message));
    } else if (frame.type === "heartbeat" && frame.id?.startsWith("srv-")) {
      send({ type: "heartbeat", id: frame.id });
    } else if (frame.type === "event") {
      onEvent(frame.payload.topic, frame.payload.payload);
    }
    if (frame.type === "auth_ok" || frame.type === "event") $("connection").textContent = "live";
  };
  ws.onclose = async (e) => {
    if (ws !== state.ws || state.stopped) return;
    state.ws = null;
    if (e.code === 4003) return signOut("Your account is suspended.");
    if (e.code === 4001 && !(await tokens.refresh())) return;
    state.attempt += 1;
    $("connection").textContent = "reconnecting…";
    state.timer = setTimeout(connect, Math.min(10000, 500 * 2 ** Math.min(state.attempt, 5)));
  };
}

function onEvent(topic, payload) {
  if (topic === "gateway.status") {
    const gateway = state.gateways.find((g) => g.id === payload.gateway_id);
    if (gateway) {
      gateway.status = payload.status;
      renderGateways();
    } else {
      loadGateways().catch(fail); // a gateway registered just now
    }
    loadAgents().catch(fail);
  } else if (topic === "gateway.metrics") {
    const gateway = state.gateways.find((g) => g.id === payload.gateway_id);
    if (gateway) {
      gateway.connection_info = { ...(gateway.connection_info || {}), metrics: payload.metrics, metrics_at: payload.metrics_at };
      gateway.last_heartbeat_at = payload.metrics_at;
      renderGateways();
    }
  } else if (topic === "agent.status") {
    loadAgents().catch(fail);
  } else if (topic === "activity") {
    $("activity").prepend(activityItem(payload));
  }
}

// ---- sections --------------------------------------------------------------------------------

function when(ts) {
  return ts ? new Date(ts).toLocaleString([], { dateStyle: "short", timeStyle: "medium" }) : "never";
}

function stateBadge(status) {
  return el("span", { class: `state ${status}` }, status);
}

async function loadGateways() {
  state.gateways = (await call("GET", "/gateways")).gateways || [];
  renderGateways();
}

function renderGateways() {
  const items = state.gateways.map((g) => {
    const m = g.connection_info?.metrics;
    const metrics = m ? `memory ${Math.round(m.memory_mb)} MB, CPU ${Math.round(m.cpu_pct)} %, ${m.active_sessions} runs, ${m.agent_count} agents` : "no metrics yet";
    const outbound = g.outbound
      ? ` · dialled at ${g.outbound.url}${g.outbound.has_device_token ? ", paired" : g.outbound.pairing_request_id ? `, approve pairing ${g.outbound.pairing_request_id}` : ""}${g.outbound.last_error ? `, last error: ${g.outbound.last_error}` : ""}`
      : "";
    return el(
      "li",
      { "data-gateway": g.id },
      el("span", { class: "name" }, g.name),
      stateBadge(g.status),
      el("span", { class: "meta" }, `last heartbeat ${when(g.last_heartbeat_at)} · ${metrics}${outbound}`),
    );
  });
  $("gateways").replaceChildren(...(items.length ? items : [el("li", {}, "No gateways yet: create a registration token and start mc-gateway with it.")]));
}

async function loadAgents() {
  state.agents = (await call("GET", "/agents")).agents || [];
  const gatewayName = (id) => state.gateways.find((g) => g.id === id)?.name || id;
  $("agents").replaceChildren(
    ...state.agents.map((a) =>
      el("li", { "data-agent": a.id }, el("span", { class: "name" }, a.name), stateBadge(a.status), el("span", { class: "meta" }, `${a.agent_key} on ${gatewayName(a.gateway_id)}`)),
    ),
  );
  renderUsers();
}

async function loadUsers() {
  state.users = (await call("GET", "/users")).users || [];
  renderUsers();
}

function renderUsers() {
  $("users").replaceChildren(
    ...state.users.map((u) => {
      const suspended = u.status === "suspended";
      const toggle = el("button", { type: "button", on: { click: () => setStatus(u, suspended ? "active" : "suspended") } }, suspended ? `Activate ${u.username}` : `Suspend ${u.username}`);
      const select = el("select", { "aria-label": `Agent to assign to ${u.username}` }, ...state.agents.map((a) => el("option", { value: a.id }, a.name)));
      const assign = el("button", { type: "button", on: { click: () => assignAgent(u, select.value) } }, `Assign to ${u.username}`);
      const sessions = el("button", { type: "button", on: { click: () => showSessions(u) } }, `Sessions of ${u.username}`);
      return el("li", { "data-user": u.id }, el("span", { class: "name" }, u.username), stateBadge(u.status), el("span", {}, u.role), toggle, select, assign, sessions);
    }),
  );
}

async function setStatus(user, status) {
  try {
    await call("PATCH", `/users/${user.id}`, { status });
    await loadUsers();
  } catch (e) {
    fail(e);
  }
}

async function assignAgent(user, agentId) {
  if (!agentId) return;
  try {
    await call("POST", `/users/${user.id}/assign`, { agent_id: agentId });
    $("console-error").textContent = `Assigned to ${user.username}.`;
  } catch (e) {
    fail(e);
  }
}

async function showSessions(user) {
  try {
    const list = (await call("GET", `/sessions?user_id=${encodeURIComponent(user.id)}`)).sessions || [];
    $("user-sessions").hidden = false;
    $("user-sessions-title").textContent = `Sessions of ${user.username}`;
    $("session-messages").replaceChildren();
    $("sessions").replaceChildren(
      ...list.map((s) =>
        el("li", {}, el("button", { type: "button", on: { click: () => showMessages(s.id) } }, `Session of ${when(s.last_message_at || s.created_at)}`)),
      ),
    );
  } catch (e) {
    fail(e);
  }
}

async function showMessages(sessionId) {
  try {
    const found = await call("GET", `/sessions/${sessionId}/messages`);
    $("session-messages").replaceChildren(...(found.messages || []).map((m) => el("li", { class: m.role }, el("span", { class: "name" }, m.role), m.content)));
  } catch (e) {
    fail(e);
  }
}

async function createUser(event) {
  event.preventDefault();
  try {
    await call("POST", "/auth/register", { username: $("new-username").value.trim(), password: $("new-password").value, role: $("new-role").value });
    $("new-username").value = $("new-password").value = "";
    await loadUsers();
  } catch (e) {
    fail(e);
  }
}

async function loadTokens() {
  const list = (await call("GET", "/registration-tokens")).registration_tokens || [];
  $("tokens").replaceChildren(
    ...list.map((t) => {
      const revoke = el("button", { type: "button", on: { click: () => revokeToken(t.id) } }, `Revoke ${t.label || t.id}`);
      const status = t.revoked ? "revoked" : t.expires_at && new Date(t.expires_at) < new Date() ? "expired" : "active";
      return el("li", { "data-token": t.id }, el("span", { class: "name" }, t.label || "(no label)"), stateBadge(status), el("span", { class: "meta" }, `used ${t.uses}${t.max_uses ? ` of ${t.max_uses}` : ""} times · expires ${when(t.expires_at)}`), t.revoked ? "" : revoke);
    }),
  );
}

async function createToken(event) {
  event.preventDefault();
  const hours = Number($("token-hours").value) || 24;
  try {
    const made = await call("POST", "/registration-tokens", { label: $("token-label").value.trim() || undefined, expires_in_seconds: Math.round(hours * 3600) });
    $("new-token-value").textContent = made.token;
    $("new-token").hidden = false;
    await loadTokens();
  } catch (e) {
    fail(e);
  }
}

async function revokeToken(id) {
  try {
    await call("DELETE", `/registration-tokens/${id}`);
    await loadTokens();
  } catch (e) {
    fail(e);
  }
}

async function addOutbound(event) {
  event.preventDefault();
  try {
    const body = { name: $("outbound-name").value.trim(), url: $("outbound-url").value.trim() };
    if ($("outbound-token").value) body.token = $("outbound-token").value;
    await call("POST", "/gateways", body);
    $("outbound-token").value = "";
    await loadGateways();
  } catch (e) {
    fail(e);
  }
}

function activityItem(a) {
  return el("li", {}, el("span", { class: "name" }, a.kind), el("span", { class: "meta" }, `${when(a.created_at)} · ${a.target_type || ""} ${a.target_id || ""}`));
}

async function loadActivity() {
  const list = (await call("GET", "/activity")).activity || [];
  $("activity").replaceChildren(...list.map(activityItem));
}

async function loadAll() {
  try {
    await loadGateways();
    await Promise.all([loadAgents(), loadUsers(), loadTokens(), loadActivity()]);
  } catch (e) {
    fail(e);
  }
}

function showTab(name) {
  for (const button of document.querySelectorAll(".tabs button")) button.setAttribute("aria-current", String(button.dataset.tab === name));
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${name}`;
}

function start() {
  $("signin").hidden = true;
  $("console").hidden = false;
  connect();
}

function init() {
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut(""));
  $("user-form").addEventListener("submit", createUser);
  $("token-form").addEventListener("submit", createToken);
  $("outbound-form").addEventListener("submit", addOutbound);
  for (const button of document.querySelectorAll(".tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  if (tokens.current && tokens.current.role === "admin") {
    tokens.set(tokens.current);
    start();
  } else {
    $("signin").hidden = false;
  }
}

init();
