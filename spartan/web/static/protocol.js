// Spartan's line protocol for the page: pure functions, no DOM, no network.
// The same format as spartan/native/wire.py (docs/protocol.md): a server line is a reply
// ("OK <verb> ..." or "ERR <code> <sentence>") or a "*" line (a message or another push).

const encoder = new TextEncoder();

export function byteLength(text) {
  return encoder.encode(text).length;
}

// One line from the server, as an object; never throws.
export function parseLine(line) {
  const [head, rest] = splitOnce(line);
  if (head === "OK" || head === "ERR") {
    const [word, tail] = splitOnce(rest);
    return { type: "reply", ok: head === "OK", word, rest: tail };
  }
  if (head !== "*") return { type: "unknown", line };
  const [kind, tail] = splitOnce(rest);
  if (kind === "MSG" || kind === "HISTORY") {
    const parts = splitN(tail, 5);
    const id = Number(parts[0]);
    if (parts.length === 5 && Number.isSafeInteger(id) && id > 0) {
      const [, time, conversation, sender, text] = parts;
      return { type: "message", kind, id, time, conversation, sender, text };
    }
    return { type: "unknown", line };
  }
  return { type: "push", kind, rest: tail };
}

// "bob=2 #group1=5" (an OK UNREAD or OK USERS reply's fields) as [["bob", "2"], ...].
export function parseFields(rest) {
  if (!rest) return [];
  return rest.split(" ").filter(Boolean).map((field) => {
    const at = field.indexOf("=");
    return at < 0 ? [field, ""] : [field.slice(0, at), field.slice(at + 1)];
  });
}

// What the composer holds, as the texts of the messages to send: one per line typed,
// each cut into pieces of at most `maxBytes` UTF-8 bytes, between words where it can,
// never inside a character.  Nothing is dropped but line breaks, the spaces where a
// long line was split, and control characters, which the server refuses (TAB stays).
export function splitMessage(text, maxBytes) {
  const pieces = [];
  const clean = text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/gu, (c) =>
    c === "\r" || c === "\n" ? c : " ");
  for (const line of clean.split(/\r?\n|\r/u)) {
    let rest = line.replace(/\s+$/u, "");
    while (rest.trim()) {
      if (byteLength(rest) <= maxBytes) {
        pieces.push(rest);
        break;
      }
      const cut = fitting(rest, maxBytes);
      const space = rest.lastIndexOf(" ", cut);
      const end = space > 0 && rest.slice(0, space).trim() ? space : cut;
      pieces.push(rest.slice(0, end));
      rest = rest.slice(end).replace(/^ +/u, "");
    }
  }
  return pieces.filter((piece) => piece.trim());
}

// The longest prefix of `text` (in UTF-16 units, on a character boundary) that fits.
function fitting(text, maxBytes) {
  let bytes = 0;
  let index = 0;
  for (const char of text) {
    const size = byteLength(char);
    if (bytes + size > maxBytes) break;
    bytes += size;
    index += char.length;
  }
  return Math.max(index, 1);
}

function splitOnce(text) {
  const at = text.indexOf(" ");
  return at < 0 ? [text, ""] : [text.slice(0, at), text.slice(at + 1)];
}

function splitN(text, count) {
  const parts = [];
  let rest = text;
  while (parts.length < count - 1) {
    const at = rest.indexOf(" ");
    if (at < 0) break;
    parts.push(rest.slice(0, at));
    rest = rest.slice(at + 1);
  }
  parts.push(rest);
  return parts;
}

// A conversation as the protocol names it ("bob", "#group1") and as people read it.
export function displayName(label) {
  return label.startsWith("#") ? label.slice(1) : label;
}

export function newClientId() {
  const random = new Uint8Array(9);
  crypto.getRandomValues(random);
  return "w" + Array.from(random, (b) => b.toString(36).padStart(2, "0")).join("");
}
