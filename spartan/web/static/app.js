// The Spartan web client: the page's state and what it shows.
//
// How it keeps the server's promise (nothing accepted lost, nothing read shown twice):
// * Messages are kept per conversation by their server id, so a message that comes
//   again (an OPEN after a reconnect, a HISTORY page, a resend's OK SENT) replaces
//   itself instead of showing twice.
// * What is typed goes to an outbox (localStorage) with a client id per message before
//   it is sent; it leaves the outbox only at its OK SENT.  After a reconnect or a reload
//   the outbox is sent again with the same client ids, so the server stores each once.
// * A message shown in the open conversation is acknowledged (ACK); the server then no
//   longer returns it as unseen, on any device.
// * A reload logs in with the session token from TOKEN (localStorage), never a password;
//   a lost connection is retried with backoff, then the page logs in with the token again
//   and re-opens the conversation it showed.
// Every text from the network goes into the page as text (textContent), never as HTML.

import { Connection, Disconnected } from "./connection.js";
import { byteLength, displayName, newClientId, parseFields, splitMessage } from "./protocol.js";

const PAGE = 50;  // messages per HISTORY page
const BACKOFF_MS = [500, 1000, 2000, 4000, 5000];
const PRESENCE_EVERY_MS = 30000;
const SESSION_KEY = "spartan.session";  // {user, token, expires}
const OPEN_KEY = "spartan.open";  // this tab's open conversation (sessionStorage)
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/u;

const $ = (id) => document.getElementById(id);

const state = {
  config: { maxLine: 4096, requirePasswords: false, rate: 5, burst: 40 },
  user: null,
  token: null,
  conversations: new Map(),  // label ("bob", "#group1") -> conversation
  current: null,
  outbox: [],  // {cid, target, text, error}; inFlight while a SEND waits for its reply
  attempt: 0,
  reconnectTimer: null,
  activity: 0,  // a counter: the conversation with the latest message has the highest
  pace: { tokens: null, updated: 0 },  // the outbox's own token bucket (sendDelay)
};
let connection = null;

// -- storage ----------------------------------------------------------------------------

function loadJSON(storage, key) {
  try {
    return JSON.parse(storage.getItem(key));
  } catch {
    return null;
  }
}

function saveSession(user, token, expires) {
  localStorage.setItem(SESSION_KEY, JSON.stringify({ user, token, expires }));
}

function outboxKey() {
  return `spartan.outbox.${state.user}`;
}

function loadOutbox() {
  const saved = loadJSON(localStorage, outboxKey());
  state.outbox = Array.isArray(saved) ? saved.map(({ cid, target, text, error }) =>
    ({ cid, target, text, error: error || null })) : [];
}

function saveOutbox() {
  const kept = state.outbox.map(({ cid, target, text, error }) => ({ cid, target, text, error }));
  localStorage.setItem(outboxKey(), JSON.stringify(kept));
}

// -- the connection ---------------------------------------------------------------------

function request(line) {
  if (connection === null) return Promise.reject(new Disconnected("Not connected."));
  return connection.request(line);
}

async function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const made = new Connection(`${scheme}://${location.host}/ws`);
  made.addEventListener("line", (event) => received(event.line));
  await made.open();
  connection = made;
  made.addEventListener("close", () => {
    if (connection === made) {
      connection = null;
      lost();
    }
  });
}

function lost() {
  if (state.user === null || state.reconnectTimer !== null) return;
  const base = BACKOFF_MS[Math.min(state.attempt, BACKOFF_MS.length - 1)];
  const delay = base * (0.8 + 0.4 * Math.random());
  state.attempt += 1;
  showBanner(`Connection lost. Reconnecting in ${Math.ceil(delay / 1000)} s…`, true);
  state.reconnectTimer = setTimeout(reconnect, delay);
}

async function reconnect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (connection !== null || state.user === null) return;
  showBanner("Connecting…", false);
  try {
    await connect();
  } catch {
    lost();
    return;
  }
  try {
    const reply = await request(`RESUME ${state.user} ${state.token}`);
    if (!reply.ok) {
      if (reply.word === "bad-token" || reply.word === "bad-syntax") {
        endSession("Your session has ended; please log in again.");
        return;
      }
      throw new Error(reply.rest);  // the store is unavailable, say: try again later
    }
    await enter();
  } catch {
    if (connection !== null) connection.close();  // reconnects from the close event
    else lost();
  }
}

// After LOGIN or RESUME: the lists, the open conversation again, then the outbox.
async function enter() {
  const [users, groups, unread] = await Promise.all(
    [request("USERS"), request("GROUPS"), request("UNREAD")]);
  state.attempt = 0;
  hideBanner();
  updateConversations(users, groups, unread);
  renderList();
  const open = state.current || sessionStorage.getItem(OPEN_KEY);
  if (open && state.conversations.has(open)) await openConversation(open);
  else renderConversation();
  pump();
}

function updateConversations(users, groups, unread) {
  const known = state.conversations;
  const labels = [];
  if (groups.ok) {
    for (const [group] of parseFields(groups.rest)) labels.push([`#${group}`, true]);
  }
  const online = new Map();
  if (users.ok) {
    for (const [user, presence] of parseFields(users.rest)) {
      online.set(user, presence === "online");
      if (user !== state.user) labels.push([user, false]);
    }
  }
  const next = new Map();
  labels.forEach(([label, isGroup], order) => {
    const conversation = known.get(label) || {
      label, isGroup, messages: new Map(), counted: new Set(), unread: 0, activity: 0,
      complete: false, loading: false, acked: 0, firstUnseen: null,
    };
    conversation.order = order;
    conversation.online = isGroup ? null : online.get(label);
    conversation.unread = 0;
    conversation.counted.clear();
    next.set(label, conversation);
  });
  // UNREAD: the one waiting longest first; above those without news, below live ones.
  const waiting = unread.ok ? parseFields(unread.rest) : [];
  waiting.forEach(([label, count], index) => {
    const conversation = next.get(label);
    if (!conversation || label === state.current) return;
    conversation.unread = Number(count) || 0;
    conversation.activity = Math.max(conversation.activity, (waiting.length - index) / 1000);
  });
  state.conversations = next;
}

function received(line) {
  if (line.type === "message") {
    messageReceived(line);
  } else if (line.type === "push" && line.kind === "NOTICE") {
    const [code] = line.rest.split(" ", 1);
    if (code === "revoked") endSession("This session was ended; please log in again.");
  }
}

function messageReceived(message) {
  const conversation = state.conversations.get(message.conversation);
  if (!conversation) return;
  const isNew = !conversation.messages.has(message.id);
  conversation.messages.set(message.id, message);
  if (conversation.opening && message.kind === "MSG" && message.sender !== state.user) {
    conversation.unseenIds.push(message.id);
  }
  if (message.kind !== "MSG" || !isNew) return;
  conversation.activity = ++state.activity;
  const sender = state.conversations.get(message.sender);
  if (sender && !sender.isGroup) sender.online = true;  // writing now: online, whatever USERS said
  if (conversation.label === state.current) {
    if (!conversation.opening) {
      renderMessages({ follow: true });
      acknowledge(conversation);
    }
  } else if (message.sender !== state.user && !conversation.counted.has(message.id)) {
    conversation.counted.add(message.id);
    conversation.unread += 1;
  }
  renderList();
  if (message.sender !== state.user) notify(conversation, message);
}

// -- conversations ------------------------------------------------------------------------

async function openConversation(label) {
  const conversation = state.conversations.get(label);
  if (!conversation) return;
  if (state.current !== label) conversation.firstUnseen = null;
  state.current = label;
  sessionStorage.setItem(OPEN_KEY, label);
  conversation.unread = 0;
  conversation.counted.clear();
  renderList();
  renderConversation();
  conversation.opening = true;
  conversation.unseenIds = [];
  try {
    // Pipelined: what was unseen, then the recent history around it.
    const [opened, history] = await Promise.all(
      [request(`OPEN ${label}`), request(`HISTORY ${label} ${PAGE}`)]);
    if (!opened.ok) {
      showConversationError(opened.rest);
      return;
    }
    if (conversation.unseenIds.length) conversation.firstUnseen = Math.min(...conversation.unseenIds);
    if (history.ok && Number(history.rest.split(" ")[1]) < PAGE) conversation.complete = true;
  } catch (error) {
    if (!(error instanceof Disconnected)) throw error;
    return;  // opened again after the reconnect
  } finally {
    conversation.opening = false;
  }
  if (state.current !== label) return;
  renderMessages({ toUnseen: true });
  acknowledge(conversation);
}

function acknowledge(conversation) {
  if (document.hidden) return;  // acknowledged when the tab is seen (visibilitychange)
  // Only others' messages: my own are never unseen, and an ACK per SEND would double
  // the lines a long paste sends (see sendDelay).
  let newest = 0;
  for (const message of conversation.messages.values()) {
    if (message.sender !== state.user && message.id > newest) newest = message.id;
  }
  if (newest > conversation.acked) {
    conversation.acked = newest;
    request(`ACK ${conversation.label} ${newest}`).catch(() => {
      conversation.acked = 0;  // sent again after the reconnect
    });
  }
}

async function loadOlder() {
  const conversation = state.conversations.get(state.current);
  if (!conversation || conversation.loading || conversation.complete) return;
  const ids = [...conversation.messages.keys()];
  if (!ids.length) return;
  conversation.loading = true;
  try {
    const reply = await request(`HISTORY ${conversation.label} ${PAGE} ${Math.min(...ids)}`);
    if (reply.ok && Number(reply.rest.split(" ")[1]) < PAGE) conversation.complete = true;
  } catch {
    return;
  } finally {
    conversation.loading = false;
  }
  if (state.current === conversation.label) renderMessages({ keepPosition: true });
}

// -- sending ----------------------------------------------------------------------------

function composerSubmitted(event) {
  event.preventDefault();
  const input = $("message-input");
  const target = state.current;
  if (!target) return;
  // The longest text one SEND line holds: the line limit less "SEND id=<cid> <target> ".
  const room = state.config.maxLine - byteLength(`SEND id=${newClientId()} ${target} `);
  const pieces = splitMessage(input.value, room);
  input.value = "";
  for (const text of pieces) state.outbox.push({ cid: newClientId(), target, text, error: null });
  saveOutbox();
  renderPending();
  pump();
}

// Milliseconds the next SEND should wait.  The server's flood guard cuts off a
// connection that stays over its rate (config.json: rate, burst), and the page would
// then resend the same lines, and be cut off again: so the outbox keeps under it, with
// a bucket half the size and a rate a fifth lower, leaving room for other commands.
function sendDelay() {
  const { rate, burst } = state.config;
  if (!burst || !rate) return 0;
  const pace = state.pace;
  const now = performance.now();
  const capacity = Math.max(1, Math.floor(burst / 2));
  const refill = 0.8 * rate / 1000;  // tokens a millisecond
  pace.tokens = pace.tokens === null ? capacity
    : Math.min(capacity, pace.tokens + (now - pace.updated) * refill);
  pace.updated = now;
  pace.tokens -= 1;  // taken now, or reserved: the next one waits behind it
  return pace.tokens >= 0 ? 0 : -pace.tokens / refill;
}

// Sends the outbox in order, paced (sendDelay), without waiting for each reply (they come
// in order).  One pump at a time; it stops when the connection goes and is started again
// by enter() after the reconnect, by a new message, or by Retry.
async function pump() {
  if (state.pumping) return;
  state.pumping = true;
  try {
    while (connection !== null) {
      const item = state.outbox.find((waiting) => !waiting.error && !waiting.inFlight);
      if (!item) break;
      const delay = sendDelay();
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
      if (connection !== null && !item.error && !item.inFlight && state.outbox.includes(item)) {
        transmit(item);
      }
    }
  } finally {
    state.pumping = false;
  }
}

async function transmit(item) {
  item.inFlight = true;
  renderPending();
  try {
    const reply = await request(`SEND id=${item.cid} ${item.target} ${item.text}`);
    if (reply.ok) {
      const [id, time] = reply.rest.split(" ");
      state.outbox = state.outbox.filter((waiting) => waiting !== item);
      const conversation = state.conversations.get(item.target);
      if (conversation) {
        conversation.messages.set(Number(id), {
          kind: "SENT", id: Number(id), time, conversation: item.target,
          sender: state.user, text: item.text,
        });
        conversation.activity = ++state.activity;
        renderList();
        if (state.current === item.target) {
          renderMessages({ follow: true });
          acknowledge(conversation);
        }
      }
    } else if (reply.word !== "rate-limited") {  // that one: sent again after the reconnect
      item.error = reply.rest || reply.word;
    }
  } catch (error) {
    if (!(error instanceof Disconnected)) item.error = String(error);
  } finally {
    item.inFlight = false;
    saveOutbox();
    renderPending();
  }
}

// -- logging in and out -------------------------------------------------------------------

async function loginSubmitted(event) {
  event.preventDefault();
  const user = $("login-user").value.trim();
  const password = $("login-password").value.trim();
  setLoginError("");
  if (!NAME.test(user)) {
    setLoginError("A user name is 1 to 32 letters, digits, _ . or -.");
    return;
  }
  $("login-button").disabled = true;
  try {
    if (connection === null) await connect();
    const reply = await request(password ? `LOGIN ${user} ${password}` : `LOGIN ${user}`);
    if (!reply.ok) {
      if (reply.word === "password-required") {
        setLoginError("This user needs a password.");
        $("login-password").focus();
      } else {
        setLoginError(reply.rest || reply.word);
      }
      return;
    }
    $("login-password").value = "";
    state.user = user;
    const token = await request("TOKEN");
    if (token.ok) {
      const [value, expires] = token.rest.split(" ");
      state.token = value;
      saveSession(user, value, expires);
    }
    loadOutbox();
    showChat();
    await enter();
  } catch {
    setLoginError("The server cannot be reached; try again.");
  } finally {
    $("login-button").disabled = false;
  }
}

async function logout() {
  const token = state.token;
  state.user = null;  // no reconnecting from here
  try {
    if (token) await request(`REVOKE ${token}`);
    await request("QUIT");
  } catch {
    // logged out locally either way
  }
  endSession("");
}

function endSession(message) {
  state.user = null;
  state.token = null;
  state.current = null;
  state.conversations = new Map();
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  localStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(OPEN_KEY);
  if (connection !== null) connection.close();
  hideBanner();
  showLogin(message);
}

// -- what the page shows ------------------------------------------------------------------

function showLogin(message) {
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  setLoginError(message || "");
  $("login-user").focus();
}

function showChat() {
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  $("whoami").textContent = `Logged in as ${state.user}`;
  updateNotificationButton();
}

function setLoginError(text) {
  $("login-error").textContent = text;
}

function showBanner(text, offerNow) {
  $("banner-text").textContent = text;
  $("reconnect-now").hidden = !offerNow;
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

function sortedConversations() {
  return [...state.conversations.values()].sort((a, b) =>
    b.activity - a.activity || (b.unread > 0) - (a.unread > 0) || a.order - b.order);
}

function renderList() {
  const list = $("conversation-list");
  const focused = document.activeElement && document.activeElement.dataset.label;
  list.replaceChildren(...sortedConversations().map((conversation) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = conversation.label;
    button.setAttribute("aria-current", String(conversation.label === state.current));
    if (conversation.unread) button.classList.add("has-news");
    const name = span("name", displayName(conversation.label));
    const presence = conversation.isGroup ? span("presence", "group")
      : span(conversation.online ? "presence online" : "presence",
        conversation.online ? "online" : "offline");
    button.append(name, " ", presence);
    if (conversation.unread) {
      const badge = span("badge", String(conversation.unread));
      badge.append(span("visually-hidden", " unread"));
      button.append(" ", badge);
    }
    button.addEventListener("click", () => openConversation(conversation.label).then(() =>
      $("message-input").focus()));
    const item = document.createElement("li");
    item.append(button);
    return item;
  }));
  if (focused) {
    const again = list.querySelector(`button[data-label="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  const news = [...state.conversations.values()].reduce((sum, c) => sum + c.unread, 0);
  document.title = news ? `(${news}) Spartan` : "Spartan";
}

function renderConversation() {
  const conversation = state.conversations.get(state.current);
  $("chat-view").classList.toggle("open", Boolean(conversation));
  $("composer").hidden = !conversation;
  $("conversation-title").textContent = conversation
    ? (conversation.isGroup ? `Group ${displayName(conversation.label)}` : displayName(conversation.label))
    : "Choose a conversation";
  renderMessages({ toUnseen: true });
  renderPending();
}

function showConversationError(text) {
  const item = document.createElement("li");
  item.className = "error";
  item.textContent = text;
  $("message-list").replaceChildren(item);
}

function renderMessages({ follow = false, keepPosition = false, toUnseen = false } = {}) {
  const box = $("messages");
  const list = $("message-list");
  const conversation = state.conversations.get(state.current);
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  const fromBottom = box.scrollHeight - box.scrollTop;
  if (!conversation) {
    list.replaceChildren();
    $("load-older").hidden = true;
    return;
  }
  const messages = [...conversation.messages.values()].sort((a, b) => a.id - b.id);
  const items = [];
  let divider = null;
  for (const message of messages) {
    if (message.id === conversation.firstUnseen) {
      divider = document.createElement("li");
      divider.className = "unseen-divider";
      divider.textContent = "New messages";
      items.push(divider);
    }
    items.push(messageItem(message.sender, message.time, message.text));
  }
  list.replaceChildren(...items);
  $("load-older").hidden = conversation.complete || messages.length === 0;
  if (keepPosition) box.scrollTop = box.scrollHeight - fromBottom;
  else if (toUnseen && divider) divider.scrollIntoView({ block: "start" });
  else if (toUnseen || (follow && atBottom)) box.scrollTop = box.scrollHeight;
}

function messageItem(sender, time, text) {
  const item = document.createElement("li");
  item.className = sender === state.user ? "message mine" : "message";
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(span("sender", sender));
  if (time) {
    const stamp = document.createElement("time");
    stamp.dateTime = time;
    stamp.textContent = formatTime(time);
    meta.append(" ", stamp);
  }
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(meta, body);
  return item;
}

function renderPending() {
  const items = state.outbox.filter((item) => item.target === state.current).map((item) => {
    const row = messageItem(state.user, null, item.text);
    row.classList.add(item.error ? "failed" : "pending");
    const status = span("state", item.error ? `Not sent: ${item.error}` : "Sending…");
    row.querySelector(".meta").append(" ", status);
    if (item.error) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "retry";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => {
        item.error = null;
        saveOutbox();
        renderPending();
        pump();
      });
      row.querySelector(".meta").append(retry);
    }
    return row;
  });
  $("pending-list").replaceChildren(...items);
  const box = $("messages");
  if (items.length) box.scrollTop = box.scrollHeight;
}

function span(className, text) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const clock = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return clock;
  return `${date.toLocaleDateString()} ${clock}`;
}

// -- notifications ----------------------------------------------------------------------

function updateNotificationButton() {
  const button = $("enable-notifications");
  button.hidden = !("Notification" in window) || Notification.permission !== "default";
}

function notify(conversation, message) {
  if (!document.hidden || !("Notification" in window)) return;
  if (Notification.permission !== "granted") return;
  const where = conversation.isGroup ? ` in ${displayName(conversation.label)}` : "";
  new Notification(`${message.sender}${where}`, { body: message.text, tag: conversation.label });
}

// -- start --------------------------------------------------------------------------------

async function start() {
  $("login-form").addEventListener("submit", loginSubmitted);
  $("composer").addEventListener("submit", composerSubmitted);
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("logout").addEventListener("click", logout);
  $("reconnect-now").addEventListener("click", reconnect);
  $("load-older").addEventListener("click", loadOlder);
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 40) loadOlder();
  });
  $("back").addEventListener("click", () => {
    state.current = null;
    sessionStorage.removeItem(OPEN_KEY);
    renderList();
    renderConversation();
  });
  $("enable-notifications").addEventListener("click", async () => {
    await Notification.requestPermission();
    updateNotificationButton();
  });
  document.addEventListener("visibilitychange", () => {
    const conversation = state.conversations.get(state.current);
    if (!document.hidden && conversation) acknowledge(conversation);
  });
  setInterval(async () => {
    if (connection === null || state.user === null) return;
    try {
      const users = await request("USERS");
      for (const [user, presence] of users.ok ? parseFields(users.rest) : []) {
        const conversation = state.conversations.get(user);
        if (conversation) conversation.online = presence === "online";
      }
      renderList();
    } catch {
      // the reconnect refreshes it
    }
  }, PRESENCE_EVERY_MS);

  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) state.config = await response.json();
  } catch {
    // the defaults
  }
  $("password-hint").hidden = !state.config.requirePasswords;
  const saved = loadJSON(localStorage, SESSION_KEY);
  if (saved && saved.user && saved.token) {
    state.user = saved.user;
    state.token = saved.token;
    loadOutbox();
    showChat();
    await reconnect();
  } else {
    showLogin("");
  }
}

start();
