// The original frontend flow, with the real socket.io-client:
// create a session over REST, join its room, wait for qr → ready → the
// sync_chats sequence, then read the chats. Prints one JSON summary line.
//
// usage: node frontend-flow.mjs <baseUrl> <sessionId> [apiKey] [transport] [metadataJson] [loginJson]
// (with loginJson the session links with a pairing code: counted as
// `pairingCode`, each one's `[code, attempt]` kept in `codes`)
import { io } from "socket.io-client";

const [base, sessionId, apiKey = "", transport = "", metadataJson = "", loginJson = ""] = process.argv.slice(2);
const metadata = metadataJson ? JSON.parse(metadataJson) : undefined;
const login = loginJson ? JSON.parse(loginJson) : undefined;
const headers = { "content-type": "application/json" };
if (apiKey) headers.authorization = `Bearer ${apiKey}`;
const fail = (why) => { console.error(why); process.exit(1); };
setTimeout(() => fail("timed out"), 30000);

const opts = { reconnection: false };
if (apiKey) opts.query = { apiKey };
if (transport) opts.transports = [transport];
const socket = io(base, opts);
const seen = { qr: 0, pairingCode: 0, codes: [], ready: 0, progress: [], complete: null, snapshot: null, errors: [], metadata: {} };

socket.on("connect_error", (e) => fail(`connect_error: ${e.message}`));
socket.on("connect", async () => {
  const r = await fetch(`${base}/whatsapp-web/session/${sessionId}`, {
    method: "POST",
    headers,
    body: JSON.stringify({ simulator: { chats: 3, messagesPerChat: [50, 75, 100], qrEveryMs: 150, pairingCodeEveryMs: 150, scanAfterMs: 400 }, metadata, login }),
  });
  if (r.status !== 201) fail(`create: ${r.status} ${await r.text()}`);
  socket.emit("join-session", { sessionId });
});
socket.on("session_state", (s) => { seen.snapshot = s; });
socket.on("qr", (q) => { if (q.sessionId === sessionId && q.qr) seen.qr++; seen.metadata.qr = q.metadata; });
socket.on("pairing_code", (c) => { if (c.sessionId === sessionId && c.code) { seen.pairingCode++; seen.codes.push([c.code, c.attempt]); } seen.metadata.pairingCode = c.metadata; });
socket.on("ready", (r) => { if (r.sessionId === sessionId) seen.ready++; seen.metadata.ready = r.metadata; });
socket.on("error", (e) => seen.errors.push(e));
socket.on("sync_chats", (p) => {
  seen.progress.push(p);
  seen.metadata.syncChats = p.metadata;
  if (p.done) {
    // "Sync complete": read what was stored.
    setTimeout(async () => {
      const r = await fetch(`${base}/whatsapp-web/session/${sessionId}/chats`, { headers });
      const body = await r.json();
      // An unknown event gets an error event back; the socket stays.
      socket.emit("dance", {});
      setTimeout(() => {
        console.log(JSON.stringify({ ...seen, chats: body.chats.map((c) => [c.id, c.messageCount]) }));
        socket.close();
        process.exit(0);
      }, 200);
    }, 50);
  }
});
socket.on("sync_complete", (c) => { seen.complete = c; seen.metadata.syncComplete = c.metadata; });
