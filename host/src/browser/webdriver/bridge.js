// The wasync page bridge: every expression wasync evaluates in WhatsApp Web
// lives in this one file, so a change on WhatsApp's side is fixed here.
//
// Executed as the body of a WebDriver `execute` call. It installs
// `window.__wasync` once per page load (a reload drops it, and the host
// re-injects). Page events go to an in-page queue the host drains with short
// calls, acknowledging by sequence number, so no call stays open long.
// A page module that is missing becomes a named error, never a hang.
if (window.__wasync) {
  return window.__wasync.instance;
}
(function () {
  const queue = [];
  let seq = 0;
  const W = {
    instance: Math.random().toString(36).slice(2) + Date.now().toString(36),
    hooked: false,
    error: null,
    authenticated: false,
  };
  window.__wasync = W;

  function push(type, data) {
    seq += 1;
    queue.push({ seq: seq, type: type, data: data === undefined ? null : data });
    // Bounded: a host that stops draining must not grow the page forever.
    if (queue.length > 5000) queue.shift();
  }

  function mod(name) {
    let m = null;
    try {
      m = typeof window.require === 'function' ? window.require(name) : null;
    } catch (e) {
      m = null;
    }
    if (!m) throw new Error('page module ' + name + ' not found');
    return m;
  }

  function wid(x) {
    if (x === null || x === undefined) return null;
    if (typeof x === 'string') return x;
    if (typeof x === 'object' && x._serialized) return x._serialized;
    return String(x);
  }

  function b64(bytes) {
    return mod('WABase64').encodeB64(bytes);
  }

  // ref,staticKeyB64,identityKeyB64,advSecretKey,platform
  async function qrString(ref) {
    const noise = await mod('WAWebUserPrefsInfoStore').waNoiseInfo.get();
    const reg = await mod('WAWebSignalStoreApi').waSignalStore.getRegistrationInfo();
    const adv = mod('WAWebUserPrefsMultiDevice').getADVSecretKey();
    const platform = mod('WAWebCompanionRegClientUtils').DEVICE_PLATFORM;
    return [ref, b64(noise.staticKeyPair.pubKey), b64(reg.identityKeyPair.pubKey), adv, platform].join(',');
  }

  function emitQr(ref) {
    if (!ref) {
      // The older DOM form is the fallback.
      const el = document.querySelector('div[data-ref]');
      ref = el && el.getAttribute('data-ref');
    }
    if (!ref) return;
    qrString(ref).then(
      function (qr) { push('qr', { qr: qr }); },
      function (e) { W.error = String((e && e.message) || e); });
  }

  function me() {
    try {
      const m = mod('WAWebUserPrefsMeUser');
      const id = wid(m.getMaybeMePnUser() || m.getMaybeMeLidUser());
      if (!id) return null;
      let pushName = null;
      try { pushName = mod('WAWebConnModel').Conn.pushname || null; } catch (e) { pushName = null; }
      return { id: id, pushName: pushName };
    } catch (e) {
      return null;
    }
  }

  function onState(state) {
    push('state', { state: state });
    if (state === 'UNPAIRED_IDLE') {
      // The code went idle: ask for fresh ones, as the retry button would.
      mod('WAWebCmd').Cmd.refreshQR();
    } else if (state === 'CONNECTED' && !W.authenticated) {
      W.authenticated = true;
      push('authenticated');
    }
  }

  function serializeMsg(m) {
    const s = typeof m.serialize === 'function' ? m.serialize() : m;
    const id = s.id || {};
    const hasMedia = !!s.directPath;
    const revoked = s.type === 'revoked';
    return {
      id: wid(id),
      fromMe: !!id.fromMe,
      remote: wid(id.remote),
      from: wid(s.from),
      to: wid(s.to),
      author: wid(s.author),
      body: revoked ? null : hasMedia ? (s.caption === undefined ? null : s.caption) : (s.body === undefined ? null : s.body),
      type: s.type || 'chat',
      t: s.t || 0,
      ack: typeof s.ack === 'number' ? s.ack : 0,
      hasMedia: hasMedia,
      quotedId: s.quotedStanzaID || null,
      isNotification: !!s.isNotification,
      // An edited message: when its newest edit was sent (ms).
      editedAt: typeof s.latestEditSenderTimestampMs === 'number' ? s.latestEditSenderTimestampMs : null,
      revoked: revoked,
      hasReaction: !!s.hasReaction,
    };
  }

  // The models of a collection (or the items of an array).
  function models(coll) {
    if (!coll) return [];
    return typeof coll.getModelsArray === 'function' ? coll.getModelsArray() : Array.from(coll);
  }

  // The reactions of the fetched messages that have any (`hasReaction`),
  // read from the reactions collection (one aggregate per emoji, each with
  // its senders), as `reactions: [{reactor, emoji, at}]`. A page without
  // the collection, or a message whose reactions cannot be read, gives
  // none: the live events still report what changes from now on.
  async function withReactions(msgs) {
    const R = mod('WAWebCollections').Reactions;
    if (!R || typeof R.find !== 'function') return msgs;
    for (const s of msgs) {
      if (!s.hasReaction) continue;
      try {
        const found = await R.find(s.id);
        const out = [];
        models(found && found.reactions).forEach(function (agg) {
          models(agg.senders).forEach(function (r) {
            const reactor = wid(r.senderUserJid);
            if (!reactor || !r.reactionText) return;
            out.push({ reactor: reactor, emoji: r.reactionText, at: typeof r.timestamp === 'number' ? r.timestamp : 0 });
          });
        });
        s.reactions = out;
      } catch (e) { /* read again by the next sync */ }
    }
    return msgs;
  }

  // --- changes of messages: edits, deletes for everyone, acks, reactions --
  // The model's events as WhatsApp Web fires them: `change:body` (or
  // `change:caption`) after an edit, whose time is on the model;
  // `change:type` to `revoked` for a delete for everyone (then the body
  // goes too, which is no edit); `change:ack`. WhatsApp Web keeps no time
  // of a revoke or an ack on the model: the page's clock stands in.
  // Reactions are not on the message model: the page writes them through
  // its reactions module, which the bridge wraps.
  function keyOf(m) {
    const id = (m && m.id) || {};
    return { id: wid(id), remote: wid(id.remote) };
  }

  function onEdit(m) {
    if (!m || m.type === 'revoked' || m.isNotification) return;
    const s = serializeMsg(m);
    const at = typeof m.latestEditSenderTimestampMs === 'number' ? m.latestEditSenderTimestampMs : Date.now();
    push('edit', { id: s.id, remote: s.remote, body: s.body, at: at });
  }

  function hookReactions() {
    let R = null;
    try { R = mod('WAWebDBCreateOrUpdateReactions'); } catch (e) { return; }
    if (!R || typeof R.createOrUpdateReactions !== 'function' || R.__wasync) return;
    const write = R.createOrUpdateReactions;
    R.createOrUpdateReactions = function (list) {
      try {
        (list || []).forEach(function (r) {
          const parent = wid(r.parentMsgKey);
          if (!parent) return;
          push('reaction', {
            id: parent,
            remote: parent.split('_')[1] || null,
            reactor: wid(r.senderUserJid),
            emoji: r.reactionText || null,
            at: typeof r.timestamp === 'number' ? r.timestamp : Date.now(),
          });
        });
      } catch (e) { /* a reaction the bridge cannot read is not reported */ }
      return write.apply(this, arguments);
    };
    R.__wasync = true;
  }

  function serializeChat(c) {
    const s = typeof c.serialize === 'function' ? c.serialize() : c;
    return {
      id: wid(s.id),
      name: s.formattedTitle || s.name || null,
      isGroup: !!s.isGroup,
      unreadCount: s.unreadCount || 0,
      t: s.t || 0,
      archive: !!s.archive,
      pin: !!s.pin,
      muteExpiration: (s.mute && s.mute.expiration) || 0,
    };
  }

  function hook() {
    const Socket = mod('WAWebSocketModel').Socket;
    const Conn = mod('WAWebConnModel').Conn;
    const Cmd = mod('WAWebCmd').Cmd;
    const Collections = mod('WAWebCollections');
    if (!Collections.Chat || !Collections.Msg) throw new Error('page module WAWebCollections has no Chat/Msg collections');
    mod('WAWebChatLoadMessages');

    if (/[?&]post_logout=1/.test(window.location.search)) push('logout', { reason: 'post_logout' });
    Socket.on('change:state', function (_m, state) { onState(state); });
    Conn.on('change:ref', function (_m, ref) { if (!W.authenticated) emitQr(ref); });
    Socket.on('change:hasSynced', function (_m, synced) {
      if (synced) {
        if (!W.authenticated) { W.authenticated = true; push('authenticated'); }
        push('ready', { me: me() });
      }
    });
    Cmd.on('logout', function () { push('logout', { reason: 'logout' }); });
    Cmd.on('logout_from_bridge', function () { push('logout', { reason: 'logout' }); });
    Collections.Msg.on('add', function (m) {
      if (m && m.isNewMsg) {
        const s = serializeMsg(m);
        if (!s.isNotification) push('message', s);
      }
    });
    Collections.Msg.on('change:ack', function (m, ack) {
      const k = keyOf(m);
      push('ack', { id: k.id, remote: k.remote, ack: ack, at: Date.now() });
    });
    Collections.Msg.on('change:body', function (m) { if (!m.directPath) onEdit(m); });
    Collections.Msg.on('change:caption', function (m) { if (m.directPath) onEdit(m); });
    Collections.Msg.on('change:type', function (m) {
      if (m && m.type === 'revoked') {
        const k = keyOf(m);
        push('revoke', { id: k.id, remote: k.remote, at: Date.now() });
      }
    });
    hookReactions();

    const state = Socket.state;
    onState(state);
    if (state === 'UNPAIRED' || state === 'UNPAIRED_IDLE') emitQr(Conn.ref);
    if (Socket.hasSynced) {
      if (!W.authenticated) { W.authenticated = true; push('authenticated'); }
      push('ready', { me: me() });
    }
  }

  function tryHook() {
    if (W.hooked || W.error) return;
    if (!(window.Debug && window.Debug.VERSION)) return;
    try {
      hook();
      W.hooked = true;
    } catch (e) {
      W.error = String((e && e.message) || e);
    }
  }

  // Events after `ack` (the host has them), at most `max` at a time.
  W.drain = function (ack, max) {
    while (queue.length && queue[0].seq <= ack) queue.shift();
    tryHook();
    return {
      instance: W.instance,
      loaded: !!(window.Debug && window.Debug.VERSION),
      hooked: W.hooked,
      error: W.error,
      events: queue.slice(0, max || 200),
    };
  };

  W.chats = function () {
    return mod('WAWebCollections').Chat.getModelsArray().map(serializeChat);
  };

  // The address book: every person of the Contact collection (not the
  // account itself, not groups), each by phone-number id when WhatsApp Web
  // maps their linked id to a number, with the `@lid` beside it; and the
  // members of every group chat (`groupMetadata.participants`).
  W.contacts = function () {
    const C = mod('WAWebCollections');
    if (!C.Contact) throw new Error('page module WAWebCollections has no Contact collection');
    let api = null;
    try { api = mod('WAWebApiContact'); } catch (e) { api = null; }
    const ask = function (f, w) {
      if (!api || typeof api[f] !== 'function') return null;
      try { return wid(api[f](w)); } catch (e) { return null; }
    };
    const all = models;
    const contacts = [];
    all(C.Contact).forEach(function (c) {
      const id = wid(c.id);
      if (!id || c.isMe || c.isGroup) return;
      const server = id.split('@')[1];
      if (server !== 'c.us' && server !== 'lid') return;
      let phone = server === 'c.us' ? id : ask('getPhoneNumber', c.id);
      let lid = server === 'lid' ? id : ask('getCurrentLid', c.id);
      contacts.push({
        id: phone || id,
        name: c.name || null,
        pushname: c.pushname || null,
        number: phone ? phone.split('@')[0] : null,
        isBusiness: !!c.isBusiness,
        lid: lid && lid !== (phone || id) ? lid : null,
      });
    });
    const groups = [];
    all(C.Chat).forEach(function (chat) {
      const meta = chat.groupMetadata;
      if (!chat.isGroup || !meta || !meta.participants) return;
      groups.push({
        chatId: wid(chat.id),
        participants: all(meta.participants).map(function (p) {
          return { id: wid(p.id), isAdmin: !!p.isAdmin, isSuperAdmin: !!p.isSuperAdmin };
        }),
      });
    });
    return { contacts: contacts, groups: groups };
  };

  // The newest `limit` messages of a chat, oldest first: what is loaded,
  // then earlier pages until the limit or the start of the history. With
  // `after` ({t: ms, ids: [...]}, the newest stored message of the chat),
  // only messages newer than it, and no earlier page is loaded once a
  // message it covers is in memory: everything before that is stored.
  W.messages = async function (chatId, limit, after) {
    const Collections = mod('WAWebCollections');
    const load = mod('WAWebChatLoadMessages').loadEarlierMsgs;
    if (typeof load !== 'function') throw new Error('page module WAWebChatLoadMessages has no loadEarlierMsgs');
    const chat = Collections.Chat.get(chatId);
    if (!chat) throw new Error('chat ' + chatId + ' not found');
    const have = function () {
      return chat.msgs.getModelsArray().filter(function (m) { return !m.isNotification; });
    };
    // Since April 2026 the call takes `{chat}`; before, `(chat, msgs)`.
    let style = load.length >= 2 ? 'old' : 'new';
    const call = function (s) { return s === 'new' ? load({ chat: chat }) : load(chat, chat.msgs); };
    const known = after ? new Set(after.ids || []) : null;
    const isNew = function (m) {
      const t = (m.t || 0) * 1000;
      return t > after.t || (t === after.t && !known.has(m.id));
    };
    const reached = function () {
      if (!after) return false;
      return have().some(function (m) {
        const s = serializeMsg(m);
        return !s.isNotification && !isNew(s);
      });
    };
    let rounds = 0;
    while (have().length < limit && !reached() && rounds < 10000) {
      rounds += 1;
      let got;
      try {
        got = await call(style);
      } catch (e) {
        if (e instanceof TypeError && rounds === 1) {
          style = style === 'new' ? 'old' : 'new';
          got = await call(style);
        } else {
          throw e;
        }
      }
      if (!got || got.length === 0) break;
    }
    let msgs = have().map(serializeMsg).filter(function (m) { return !m.isNotification; });
    msgs.sort(function (a, b) { return a.t - b.t; });
    msgs = msgs.slice(Math.max(0, msgs.length - limit));
    if (after) msgs = msgs.filter(isNew);
    return { style: style, messages: await withReactions(msgs) };
  };

  // Up to `limit` messages of a chat older than `before` ({t: ms, ids: [...]},
  // the oldest stored message of the chat, or a time), the newest of them,
  // oldest first; none older than `notBefore` (ms, or null). Earlier pages
  // are loaded as scrolling up does, until enough of them are in memory, the
  // history starts (the collection's `msgLoadState.noEarlierMsgs`, or an
  // empty page), or the oldest loaded message is older than `notBefore`.
  W.earlier = async function (chatId, limit, before, notBefore) {
    const chat = mod('WAWebCollections').Chat.get(chatId);
    if (!chat) throw new Error('chat ' + chatId + ' not found');
    const load = mod('WAWebChatLoadMessages').loadEarlierMsgs;
    if (typeof load !== 'function') throw new Error('page module WAWebChatLoadMessages has no loadEarlierMsgs');
    let style = load.length >= 2 ? 'old' : 'new';
    const call = function (s) { return s === 'new' ? load({ chat: chat }) : load(chat, chat.msgs); };
    const known = new Set(before.ids || []);
    const older = function (s) {
      const t = s.t * 1000;
      return t < before.t || (t === before.t && !known.has(s.id));
    };
    const tooOld = function (s) { return notBefore !== null && s.t * 1000 < notBefore; };
    const loaded = function () {
      return chat.msgs.getModelsArray().map(serializeMsg).filter(function (s) { return !s.isNotification; });
    };
    const atStart = function () {
      const st = chat.msgs.msgLoadState;
      return !!(st && st.noEarlierMsgs);
    };
    let rounds = 0;
    for (;;) {
      const have = loaded();
      const wanted = have.filter(function (s) { return older(s) && !tooOld(s); }).length;
      if (wanted >= limit || atStart() || have.some(tooOld) || rounds >= 10000) break;
      rounds += 1;
      let got;
      try {
        got = await call(style);
      } catch (e) {
        if (e instanceof TypeError && rounds === 1) {
          style = style === 'new' ? 'old' : 'new';
          got = await call(style);
        } else {
          throw e;
        }
      }
      if (!got || got.length === 0) break;
    }
    let msgs = loaded().filter(function (s) { return older(s) && !tooOld(s); });
    msgs.sort(function (a, b) { return a.t - b.t; });
    msgs = msgs.slice(Math.max(0, msgs.length - limit));
    return { style: style, messages: await withReactions(msgs), atStart: atStart() };
  };

  // --- "Link with phone number" ----------------------------------------
  // Driven through the login screens as a person would: the link under the
  // QR code, the phone number form, "Next"; then the code shown (one
  // character per element, all of them in `data-link-code`) is read each
  // time it changes. A step every 250 ms, until the page is linked, so a
  // code that is replaced, an idle screen that comes back with a QR, or a
  // slow form are all just the next step. Matched by role and attribute,
  // and by text only where the page has nothing else.
  function byText(re) {
    const els = document.querySelectorAll('[role="button"], button, a');
    for (let i = 0; i < els.length; i++) {
      if (re.test((els[i].textContent || '').trim())) return els[i];
    }
    return null;
  }

  function phoneInput() {
    return document.querySelector('input[aria-label*="phone number" i], input[type="tel"], input[inputmode="tel"]');
  }

  function typeInto(input, value) {
    // Through the element's own setter, so a framework that tracks the
    // value sees the change, then the event a keyboard would send.
    const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
    setter.call(input, value);
    input.dispatchEvent(new Event('input', { bubbles: true }));
    input.dispatchEvent(new Event('change', { bubbles: true }));
  }

  function pairStep() {
    if (W.authenticated || !W.phone) {
      if (W.pairTimer) { clearInterval(W.pairTimer); W.pairTimer = null; }
      return;
    }
    const codeEl = document.querySelector('[data-link-code]');
    if (codeEl) {
      const code = (codeEl.getAttribute('data-link-code') || codeEl.textContent || '').replace(/[^A-Za-z0-9]/g, '');
      if (code.length === 8 && code !== W.lastCode) {
        W.lastCode = code;
        push('pairing_code', { code: code });
      }
      return;
    }
    const input = phoneInput();
    if (input) {
      const digits = function (v) { return String(v || '').replace(/[^0-9]/g, ''); };
      if (digits(input.value) !== digits(W.phone)) {
        typeInto(input, W.phone);
      } else if (!W.sentAt || Date.now() - W.sentAt > 3000) {
        const next = byText(/^next$/i);
        if (next) { W.sentAt = Date.now(); next.click(); }
      }
      return;
    }
    const link = byText(/phone number/i);
    if (link) link.click();
  }

  // Links with a pairing code for `phone` (`+` and digits) instead of the QR.
  W.linkWithPhone = function (phone) {
    W.phone = phone;
    const step = function () {
      try { pairStep(); } catch (e) { /* the next step tries again */ }
    };
    if (!W.pairTimer) W.pairTimer = setInterval(step, 250);
    step();
    return true;
  };

  W.logout = async function () {
    const Socket = mod('WAWebSocketModel').Socket;
    if (typeof Socket.logout === 'function') await Socket.logout();
    return true;
  };

  tryHook();
})();
return window.__wasync.instance;
