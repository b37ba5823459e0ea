// The storage paths the host is measured against in bench row P1, on the
// official Node driver, in a process of its own (the bench runs it beside
// the host, never inside it):
//
//   node mongo-bench.mjs seed URI DB CHATS PER_CHAT default|durable
//     the seed's code: per chat one `updateOne` upsert of the chat, then
//     one `insertMany` of its messages, one chat after the other; at the
//     driver's default write concern or at the host's `w: majority, j: true`.
//   node mongo-bench.mjs raw URI DB CHATS PER_CHAT BATCH IN_FLIGHT
//     the documents alone: `insertMany` batches of BATCH, IN_FLIGHT at a
//     time, `w: majority, j: true` (to find the server's fastest path).
//
// The collections get the host's indexes (host/src/storage/mongo/schema.rs)
// and documents of the host's shape, so the rows compare storage paths, not
// schemas. Prints one JSON line: {"messages": N, "ms": elapsed}.
import { MongoClient } from "mongodb";

const [mode, uri, dbName, chatsArg, perArg, a, b] = process.argv.slice(2);
if (!mode || !uri || !dbName || !chatsArg || !perArg) {
  console.error("usage: mongo-bench.mjs seed|raw URI DB CHATS PER_CHAT ...");
  process.exit(2);
}
const chats = Number(chatsArg);
const perChat = Number(perArg);
const sessionId = "bench";

function message(chat, n) {
  return {
    sessionId,
    messageId: `true_${chat}@c.us_3EB0${n.toString(16).toUpperCase().padStart(16, "0")}`,
    chatId: `${chat}@c.us`,
    from: `${chat}@c.us`,
    to: "me@c.us",
    author: null,
    body: `message ${n} of chat ${chat}: a line of ordinary text, about as long as a chat message`,
    type: "chat",
    timestamp: new Date(1_700_000_000_000 + n * 1000),
    fromMe: n % 3 === 0,
    hasMedia: false,
    ack: 2,
    quotedId: null,
    tags: [],
    attributes: {},
    editedAt: null,
    revoked: false,
    revokedAt: null,
    ackAt: null,
    reactions: [],
    rev: null,
  };
}

const durable = { w: "majority", j: true };
const client = new MongoClient(uri, { appName: "wasync-bench" });
await client.connect();
try {
  const db = client.db(dbName);
  const messages = db.collection("messages");
  const chatColl = db.collection("chats");
  await messages.createIndex({ sessionId: 1, messageId: 1 }, { unique: true, name: "uniq_session_message" });
  await messages.createIndex(
    { sessionId: 1, chatId: 1, timestamp: -1, messageId: 1 },
    { name: "session_chat_time_id" },
  );
  await chatColl.createIndex({ sessionId: 1, chatId: 1 }, { unique: true, name: "uniq_session_chat" });
  await chatColl.createIndex(
    { sessionId: 1, lastMessageAt: -1, chatId: 1 },
    { name: "session_activity" },
  );
  const all = [];
  for (let c = 0; c < chats; c++) {
    const batch = [];
    for (let n = 0; n < perChat; n++) batch.push(message(c, n));
    all.push(batch);
  }

  let started;
  if (mode === "seed") {
    const options = a === "durable" ? { writeConcern: durable } : {};
    started = performance.now();
    for (let c = 0; c < chats; c++) {
      await chatColl.updateOne(
        { sessionId, chatId: `${c}@c.us` },
        {
          $set: {
            name: `Chat ${c}`,
            isGroup: false,
            unreadCount: 0,
            archived: false,
            pinned: false,
            lastMessageAt: new Date(1_700_000_000_000 + perChat * 1000),
            syncedAt: new Date(),
          },
        },
        { upsert: true, ...options },
      );
      await messages.insertMany(all[c], options);
    }
  } else if (mode === "raw") {
    const size = Number(a);
    const inFlight = Number(b);
    const docs = all.flat();
    const batches = [];
    for (let i = 0; i < docs.length; i += size) batches.push(docs.slice(i, i + size));
    started = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < batches.length) {
        const batch = batches[next++];
        await messages.insertMany(batch, { ordered: false, writeConcern: durable });
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  const ms = performance.now() - started;
  const stored = await messages.countDocuments({ sessionId });
  if (stored !== chats * perChat) {
    throw new Error(`stored ${stored} messages, expected ${chats * perChat}`);
  }
  console.log(JSON.stringify({ messages: stored, ms }));
} finally {
  await client.close();
}
