// One WebSocket to the server, speaking the line protocol: one line per text message.
//
// Every command gets exactly one reply, in order, so `request` keeps a queue of the
// commands waiting for theirs.  "*" lines are events ("line"), whatever they belong to.
// A server PING is answered at once.  A reply that does not come within REPLY_TIMEOUT_MS
// means the connection is dead even if the socket has not noticed: it is closed, and
// the page reconnects (app.js) as after any loss.

import { parseLine } from "./protocol.js";

const REPLY_TIMEOUT_MS = 20000;

export class Disconnected extends Error {}

export class Connection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.socket = null;
    this.waiting = [];  // {resolve, reject, timer} per command sent, in order
  }

  // Resolves with the server's greeting once connected; rejects if that fails.
  open() {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      let greeted = false;
      socket.addEventListener("message", (event) => {
        if (typeof event.data !== "string") return;
        const line = parseLine(event.data);
        if (!greeted) {
          greeted = true;
          if (line.type === "push" && line.kind === "HELLO") resolve(line);
          else reject(new Disconnected(event.data));  // e.g. ERR too-many-connections
          return;
        }
        this.received(line);
      });
      socket.addEventListener("close", () => {
        if (this.socket !== socket) return;
        this.socket = null;
        if (!greeted) reject(new Disconnected("The server could not be reached."));
        this.failWaiting();
        this.dispatchEvent(new Event("close"));
      });
    });
  }

  get connected() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  // Send one command line; resolves with its reply ({ok, word, rest}).
  request(line) {
    if (!this.connected) return Promise.reject(new Disconnected("Not connected."));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.close(), REPLY_TIMEOUT_MS);
      this.waiting.push({ resolve, reject, timer });
      this.socket.send(line);
    });
  }

  close() {
    const socket = this.socket;
    if (socket === null) return;
    this.socket = null;
    socket.close();
    this.failWaiting();
    this.dispatchEvent(new Event("close"));
  }

  received(line) {
    if (line.type === "reply") {
      const head = this.waiting.shift();
      if (head) {
        clearTimeout(head.timer);
        head.resolve(line);
      }
      return;
    }
    if (line.type === "push" && line.kind === "PING") {
      this.request(line.rest ? `PONG ${line.rest}` : "PONG").catch(() => {});
      return;
    }
    this.dispatchEvent(Object.assign(new Event("line"), { line }));
  }

  failWaiting() {
    const waiting = this.waiting;
    this.waiting = [];
    for (const { reject, timer } of waiting) {
      clearTimeout(timer);
      reject(new Disconnected("The connection was lost."));
    }
  }
}
