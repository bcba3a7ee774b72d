// Mission Control's chat page: sign in, the user's agents, conversations that stream.
//
// Tokens live in sessionStorage: they survive a reload of this tab (a reply streaming when the
// page reloads is resumed) and die with the tab; no cookie is used, so no other site can make
// the browser send them. Every text from the server is put in the page with textContent, never
// as HTML.

import { Tokens, socketUrl } from "./auth.js";

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const tokens = new Tokens("mc.tokens");

const state = {
  agents: [],
  agentId: store.getItem("mc.agent"),
  sessionId: store.getItem("mc.session"),
  sessions: [],
  messages: new Map(), // seq -> message of the open session
  drafts: new Map(), // run id -> text streamed so far (open session)
  pending: new Map(), // client id -> text of a chat not acked yet
  hasMore: false,
  ws: null,
  attempt: 0,
  reconnectTimer: null,
  stopped: false,
};

function saveView() {
  state.agentId ? store.setItem("mc.agent", state.agentId) : store.removeItem("mc.agent");
  state.sessionId ? store.setItem("mc.session", state.sessionId) : store.removeItem("mc.session");
}

// ---- sign-in and tokens ----------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  $("signin-error").textContent = "";
  const failed = await tokens.signIn(
    $("organization").value.trim(),
    $("username").value.trim(),
    $("password").value,
  );
  if (failed) {
    $("signin-error").textContent = failed;
    return;
  }
  $("password").value = "";
  showChat();
  connect();
}

// A refreshed token extends the open socket.
tokens.onRefreshed = (access) => send({ type: "auth", id: `extend-${Date.now()}`, payload: { token: access } });
tokens.onEnded = (message) => signOut(message);

function signOut(message) {
  state.stopped = true;
  tokens.signOut();
  state.agentId = state.sessionId = null;
  saveView();
  clearTimeout(state.reconnectTimer);
  if (state.ws) state.ws.close(1000);
  state.ws = null;
  $("chat").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("username").focus();
}

// ---- the socket --------------------------------------------------------------------------

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function setConnection(text, down) {
  const el = $("connection");
  el.textContent = text;
  el.classList.toggle("down", !!down);
}

function connect() {
  state.stopped = false;
  clearTimeout(state.reconnectTimer);
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  setConnection(state.attempt ? "reconnecting…" : "connecting…", state.attempt > 0);
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", payload: { token: tokens.access } }));
  ws.onmessage = (e) => {
    let frame;
    try {
      frame = JSON.parse(e.data);
    } catch {
      return;
    }
    onFrame(frame);
  };
  ws.onclose = (e) => onClosed(ws, e.code);
}

async function onClosed(ws, code) {
  if (ws !== state.ws || state.stopped) return;
  state.ws = null;
  $("stop").hidden = true;
  if (code === 4003) {
    signOut("Your account is suspended.");
    return;
  }
  if (code === 4001 && !(await tokens.refresh())) return;
  state.attempt += 1;
  setConnection("reconnecting…", true);
  const delay = Math.min(10000, 500 * 2 ** Math.min(state.attempt, 5)) * (0.5 + Math.random() / 2);
  state.reconnectTimer = setTimeout(connect, delay);
}

function onFrame(frame) {
  const p = frame.payload || {};
  switch (frame.type) {
    case "auth_ok":
      state.attempt = 0;
      setConnection("connected");
      state.agents = p.assignments || [];
      renderAgents();
      send({ type: "sessions", id: "sessions" });
      if (state.agentId && state.agents.some((a) => a.agent_id === state.agentId)) {
        openAgent(state.agentId, true);
      }
      break;
    case "auth_error":
      setConnection(`not signed in (${p.reason})`, true);
      break;
    case "heartbeat":
      if (frame.id && frame.id.startsWith("srv-")) send({ type: "heartbeat", id: frame.id });
      break;
    case "sessions":
      state.sessions = p.sessions || [];
      renderSessions();
      // One agent and nothing open yet: its latest conversation, at once (on a phone the
      // agent list would otherwise be all there is, with no composer).
      if (!state.agentId && state.agents.length === 1) openAgent(state.agents[0].agent_id, false);
      break;
    case "history":
      onHistory(p);
      break;
    case "ack":
      onAck(frame.id, p);
      break;
    case "chat":
      onMessage(p);
      break;
    case "chunk":
      onChunk(p);
      break;
    case "system":
      onSystem(p);
      break;
    case "error":
      onError(frame.id, p);
      break;
    default:
      break;
  }
}

// ---- agents and sessions -------------------------------------------------------------------

function renderAgents() {
  const list = $("agents");
  list.replaceChildren();
  for (const agent of state.agents) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.agent = agent.agent_id;
    button.setAttribute("aria-current", String(agent.agent_id === state.agentId));
    const name = document.createElement("span");
    name.textContent = agent.agent_name;
    const status = document.createElement("span");
    status.className = `state ${agent.status}`;
    status.textContent = agent.status;
    button.append(name, status);
    button.addEventListener("click", () => openAgent(agent.agent_id, false));
    li.append(button);
    list.append(li);
  }
  if (!state.agents.length) {
    const li = document.createElement("li");
    li.textContent = "No agents are assigned to you yet.";
    list.append(li);
  }
}

function setAgentStatus(agentId, status) {
  const agent = state.agents.find((a) => a.agent_id === agentId);
  if (agent) {
    agent.status = status;
    renderAgents();
  }
}

function openAgent(agentId, keepSession) {
  state.agentId = agentId;
  if (!keepSession) {
    const sessions = state.sessions.filter((s) => s.agent_id === agentId);
    state.sessionId = sessions.length ? sessions[0].session_id : null;
  }
  saveView();
  const agent = state.agents.find((a) => a.agent_id === agentId);
  $("title").textContent = agent ? agent.agent_name : "Mission Control";
  $("chat").classList.add("in-conversation");
  renderAgents();
  renderSessions();
  openSession(state.sessionId);
  $("message").focus();
}

function renderSessions() {
  const select = $("session");
  select.replaceChildren();
  const mine = state.sessions.filter((s) => s.agent_id === state.agentId);
  if (state.sessionId && !mine.some((s) => s.session_id === state.sessionId)) {
    mine.unshift({ session_id: state.sessionId, last_message_at: null });
  }
  for (const s of mine) {
    const option = document.createElement("option");
    option.value = s.session_id;
    const when = s.last_message_at
      ? new Date(s.last_message_at).toLocaleString([], { dateStyle: "short", timeStyle: "short" })
      : "now";
    option.textContent = when;
    option.selected = s.session_id === state.sessionId;
    select.append(option);
  }
  if (!state.sessionId) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = "New session";
    option.selected = true;
    select.append(option);
  }
}

function openSession(sessionId) {
  state.sessionId = sessionId || null;
  saveView();
  state.messages.clear();
  state.drafts.clear();
  state.hasMore = false;
  $("messages").replaceChildren();
  $("agent-status").textContent = "";
  $("stop").hidden = true;
  if (state.sessionId) {
    send({ type: "history", id: "history-latest", payload: { session_id: state.sessionId, limit: 50 } });
  }
}

// ---- messages ---------------------------------------------------------------------------------

function lastSeq() {
  let max = 0;
  for (const seq of state.messages.keys()) max = Math.max(max, seq);
  return max;
}

function onHistory(p) {
  if (p.session_id !== state.sessionId) return;
  const older = state.messages.size > 0;
  for (const m of p.messages || []) state.messages.set(m.seq, m);
  state.hasMore = !!p.has_more;
  renderMessages(older ? "keep" : "bottom");
  if (!older) {
    // Catch up on anything newer, and the reply streaming right now (if any).
    send({ type: "resume", id: "resume", payload: { sessions: [{ session_id: state.sessionId, after_seq: lastSeq() }] } });
  }
}

function onMessage(m) {
  if (m.session_id !== state.sessionId) {
    return;
  }
  if (m.run_id) state.drafts.delete(m.run_id);
  state.messages.set(m.seq, m);
  if (m.role !== "user") $("agent-status").textContent = "";
  $("stop").hidden = state.drafts.size === 0;
  renderMessages("bottom");
}

function onAck(clientId, p) {
  const text = state.pending.get(clientId);
  state.pending.delete(clientId);
  if (!state.sessionId) {
    state.sessionId = p.session_id;
    saveView();
    state.sessions.unshift({ session_id: p.session_id, agent_id: state.agentId, last_message_at: new Date().toISOString() });
    renderSessions();
  }
  if (p.session_id === state.sessionId && text !== undefined && !state.messages.has(p.seq)) {
    state.messages.set(p.seq, { seq: p.seq, role: "user", content: text, session_id: p.session_id });
    renderMessages("bottom");
  }
}

function onChunk(p) {
  if (p.session_id !== state.sessionId) return;
  const sofar = state.drafts.get(p.run_id) || "";
  // Offsets are bytes of UTF-8 text: apply in bytes.
  const bytes = new TextEncoder().encode(sofar);
  if (p.offset > bytes.length) return; // a gap: the resume after the next reconnect fills it
  const head = new TextDecoder().decode(bytes.slice(0, p.offset));
  state.drafts.set(p.run_id, head + p.delta);
  $("stop").hidden = false;
  $("agent-status").textContent = "typing…";
  renderMessages("bottom");
}

function onSystem(p) {
  if (p.event === "agent_status" && p.session_id === state.sessionId) {
    const phase = p.phase === "thinking" ? "thinking…" : p.phase === "tool" ? `working (${p.detail || "tool"})…` : "typing…";
    $("agent-status").textContent = phase;
  } else if (p.event === "agent_online" || p.event === "agent_offline") {
    setAgentStatus(p.agent_id, p.event === "agent_online" ? "online" : "offline");
  }
}

function onError(id, p) {
  if (id && state.pending.has(id)) state.pending.delete(id);
  $("chat-error").textContent = p.message || p.code;
}

function renderMessages(scroll) {
  const list = $("messages");
  const before = list.scrollHeight - list.scrollTop;
  const items = [];
  if (state.hasMore) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = "Scroll up for older messages";
    items.push(li);
  }
  for (const seq of [...state.messages.keys()].sort((a, b) => a - b)) {
    const m = state.messages.get(seq);
    const li = document.createElement("li");
    li.className = m.role;
    li.dataset.seq = String(seq);
    li.textContent = m.content;
    items.push(li);
  }
  for (const [run, text] of state.drafts) {
    const li = document.createElement("li");
    li.className = "agent streaming";
    li.dataset.run = run;
    li.textContent = text;
    items.push(li);
  }
  list.replaceChildren(...items);
  list.scrollTop = scroll === "bottom" ? list.scrollHeight : list.scrollHeight - before;
}

function sendMessage(event) {
  event.preventDefault();
  const input = $("message");
  const content = input.value;
  if (!content.trim() || !state.agentId) return;
  const id = crypto.randomUUID();
  const payload = { agent_id: state.agentId, content };
  if (state.sessionId) payload.session_id = state.sessionId;
  $("chat-error").textContent = "";
  if (!send({ type: "chat", id, payload })) {
    $("chat-error").textContent = "Not connected; your message was not sent.";
    return;
  }
  state.pending.set(id, content);
  input.value = "";
}

function stopReply() {
  for (const run of state.drafts.keys()) {
    send({ type: "abort", id: `abort-${run}`, payload: { session_id: state.sessionId, run_id: run } });
  }
}

function showChat() {
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("chat").classList.toggle("in-conversation", !!state.agentId);
}

function init() {
  $("signin-form").addEventListener("submit", signIn);
  $("composer").addEventListener("submit", sendMessage);
  $("stop").addEventListener("click", stopReply);
  $("signout").addEventListener("click", () => signOut(""));
  $("back").addEventListener("click", () => $("chat").classList.remove("in-conversation"));
  $("new-session").addEventListener("click", () => {
    openSession(null);
    renderSessions();
    $("message").focus();
  });
  $("session").addEventListener("change", (e) => openSession(e.target.value || null));
  $("messages").addEventListener("scroll", () => {
    const list = $("messages");
    if (list.scrollTop < 40 && state.hasMore && state.sessionId) {
      const oldest = Math.min(...state.messages.keys());
      state.hasMore = false;
      send({ type: "history", id: "history-older", payload: { session_id: state.sessionId, before_seq: oldest, limit: 50 } });
    }
  });
  if (tokens.current) {
    showChat();
    tokens.set(tokens.current); // schedules the refresh
    connect();
  } else {
    $("signin").hidden = false;
  }
}

init();
