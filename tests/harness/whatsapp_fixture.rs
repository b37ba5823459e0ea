//! A local stand-in for WhatsApp Web, for the webdriver provider's tests.
//!
//! A small hyper server serves one page (`tests/fixtures/whatsapp-web.html`)
//! that imitates the part of WhatsApp Web the provider touches: a
//! `window.require` registry with event-emitting Socket / Conn / Cmd and
//! Chat / Msg collections, `window.Debug.VERSION`, a rotating QR, seeded
//! chats with paged history behind `loadEarlierMsgs`, and WhatsApp Web's
//! "link with phone number" screens (a link under the QR, a phone number
//! form, an 8-character code that is replaced now and then). The test plays
//! the phone through control endpoints (`POST /control/<command>`) that the
//! page polls: scan, enterCode, message, ack, edit, revoke, react, state, logout, reload. Page behaviour that a
//! test switches (the `loadEarlierMsgs` call style, a module to remove, QR
//! timing) is set with [`WhatsAppFixture::configure`] and applies to pages
//! loaded after it. Login survives a browser restart with the same profile
//! (the page keeps it in IndexedDB).
//!
//! The seeded account is built here in Rust, so a test can compute exactly
//! what the host must store ([`Seed::expected_chats`],
//! [`Seed::expected_messages`]) independently of the page's code.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wasync::domain::{Chat, Contact, GroupParticipants, Message, Participant};

const PAGE: &str = include_str!("../fixtures/whatsapp-web.html");

/// The phone's own id in the seeded account.
pub const ME: &str = "4915100000000@c.us";

/// One seeded message.
#[derive(Debug, Clone)]
pub struct SeedMessage {
    pub id: String,
    pub from_me: bool,
    pub author: Option<String>,
    pub body: String,
    pub kind: String,
    /// Seconds (as WhatsApp Web's `t`).
    pub t: i64,
    pub ack: i32,
    /// A media message: `body` is its caption.
    pub media: bool,
    /// A system notice, which the provider must skip.
    pub notification: bool,
}

/// One seeded chat.
#[derive(Debug, Clone)]
pub struct SeedChat {
    pub id: String,
    pub name: String,
    pub is_group: bool,
    /// As WhatsApp Web reports it: -1 for a chat marked unread.
    pub unread: i32,
    pub archive: bool,
    pub pin: bool,
    pub messages: Vec<SeedMessage>,
}

/// The seeded account.
#[derive(Debug, Clone)]
pub struct Seed {
    pub chats: Vec<SeedChat>,
    /// The address book, as the host must store it: the private chats'
    /// people, the group's members (one with a `@lid` WhatsApp Web maps to
    /// its number), and one person known only by `@lid`.
    pub contacts: Vec<Contact>,
    /// The members of each group chat.
    pub groups: Vec<GroupParticipants>,
    /// Reactions the account has before the page opens (no live event
    /// reports them: only a sync reads them).
    pub reactions: Vec<SeedReaction>,
}

/// One seeded reaction; an empty `emoji` is one taken back.
#[derive(Debug, Clone)]
pub struct SeedReaction {
    pub message_id: String,
    pub reactor: String,
    pub emoji: String,
    /// ms.
    pub at: i64,
}

/// The linked id of group member `4915100000200@c.us`, which some of their
/// group messages are authored by.
pub const MEMBER_LID: &str = "200000000000200@lid";

fn seed_contact(
    id: &str,
    name: Option<&str>,
    push: &str,
    business: bool,
    lid: Option<&str>,
) -> Contact {
    Contact {
        id: id.into(),
        name: name.map(str::to_owned),
        pushname: Some(push.into()),
        number: id.strip_suffix("@c.us").map(str::to_owned),
        is_business: business,
        lid: lid.map(str::to_owned),
    }
}

const BASE_T: i64 = 1_764_000_000;

impl Seed {
    /// A group with long history (paged), a private chat with a media
    /// message and a notification, an archived chat marked unread
    /// (`unreadCount: -1`), an unread chat.
    pub fn standard() -> Seed {
        let mk = |chat: &str, is_group: bool, n: usize, newest_t: i64| -> Vec<SeedMessage> {
            (0..n)
                .map(|k| {
                    let from_me = k % 3 == 0;
                    let media = !is_group && k == 4;
                    let notification = !is_group && k == 7;
                    SeedMessage {
                        id: format!(
                            "{}_{chat}_3EB0{k:04X}{:08X}",
                            from_me,
                            chat.len() * 7919 + k
                        ),
                        from_me,
                        author: (is_group && !from_me).then(|| {
                            if k % 8 == 4 {
                                MEMBER_LID.to_owned()
                            } else {
                                format!("49151{:08}@c.us", 200 + k % 4)
                            }
                        }),
                        body: if notification {
                            String::new()
                        } else {
                            format!("message {k} in {chat} — ünïcode ✓ \"quoted\"")
                        },
                        kind: if media {
                            "image".into()
                        } else if notification {
                            "gp2".into()
                        } else {
                            "chat".into()
                        },
                        t: newest_t - (n - 1 - k) as i64 * 60,
                        ack: if from_me { (k % 4) as i32 } else { 0 },
                        media,
                        notification,
                    }
                })
                .collect()
        };
        let family = mk("120363000000000001@g.us", true, 30, BASE_T);
        let ana = mk("4915100000001@c.us", false, 12, BASE_T - 3_600);
        let react = |m: &SeedMessage, reactor: &str, emoji: &str, after_s: i64| SeedReaction {
            message_id: m.id.clone(),
            reactor: reactor.into(),
            emoji: emoji.into(),
            at: (m.t + after_s) * 1000,
        };
        // An old group message (loaded by paging) with two reactions, and a
        // private one with a reaction and one taken back.
        let reactions = vec![
            react(&family[2], "4915100000201@c.us", "👍", 30),
            react(&family[2], "4915100000203@c.us", "❤️", 40),
            react(&ana[9], "4915100000001@c.us", "😂", 10),
            react(&ana[9], "4915100000202@c.us", "", 20),
        ];
        Seed {
            reactions,
            chats: vec![
                SeedChat {
                    id: "120363000000000001@g.us".into(),
                    name: "Family".into(),
                    is_group: true,
                    unread: 2,
                    archive: false,
                    pin: true,
                    messages: family,
                },
                SeedChat {
                    id: "4915100000001@c.us".into(),
                    name: "Ana".into(),
                    is_group: false,
                    unread: 0,
                    archive: false,
                    pin: false,
                    messages: ana,
                },
                SeedChat {
                    id: "4915100000002@c.us".into(),
                    name: "Bruno".into(),
                    is_group: false,
                    unread: -1,
                    archive: true,
                    pin: false,
                    messages: mk("4915100000002@c.us", false, 3, BASE_T - 7_200),
                },
                SeedChat {
                    id: "4915100000003@c.us".into(),
                    name: "Chen".into(),
                    is_group: false,
                    unread: 5,
                    archive: false,
                    pin: false,
                    messages: mk("4915100000003@c.us", false, 4, BASE_T - 10_800),
                },
            ],
            contacts: vec![
                seed_contact("4915100000001@c.us", Some("Ana"), "Ana", false, None),
                seed_contact("4915100000002@c.us", Some("Bruno"), "Bruno", true, None),
                seed_contact("4915100000003@c.us", Some("Chen"), "Chen", false, None),
                seed_contact(
                    "4915100000200@c.us",
                    Some("Dara"),
                    "Dara",
                    false,
                    Some(MEMBER_LID),
                ),
                seed_contact("4915100000201@c.us", Some("Emeka"), "Emeka", false, None),
                seed_contact("4915100000202@c.us", None, "Fatima", true, None),
                seed_contact("4915100000203@c.us", Some("Goran"), "Goran", false, None),
                seed_contact("300000000000300@lid", None, "Hana", false, None),
            ],
            groups: vec![GroupParticipants {
                chat_id: "120363000000000001@g.us".into(),
                participants: [
                    ME,
                    "4915100000200@c.us",
                    "4915100000201@c.us",
                    "4915100000202@c.us",
                    "4915100000203@c.us",
                ]
                .iter()
                .enumerate()
                .map(|(i, id)| Participant {
                    id: (*id).into(),
                    is_admin: i < 2,
                    is_super_admin: i == 1,
                })
                .collect(),
            }],
        }
    }

    /// The seed as the page reads it.
    pub fn to_json(&self) -> Value {
        json!({
            "me": ME,
            "pushName": "Fixture Phone",
            "contacts": self.contacts.iter().map(|c| json!({
                "id": c.id, "name": c.name, "pushname": c.pushname,
                "isBusiness": c.is_business, "lid": c.lid,
            })).collect::<Vec<_>>(),
            "groups": serde_json::to_value(&self.groups).unwrap(),
            "reactions": self.reactions.iter().map(|r| json!({
                "id": r.message_id, "reactor": r.reactor, "emoji": r.emoji, "at": r.at,
            })).collect::<Vec<_>>(),
            "chats": self.chats.iter().map(|c| json!({
                "id": c.id, "name": c.name, "isGroup": c.is_group, "unreadCount": c.unread,
                "archive": c.archive, "pin": c.pin,
                "t": c.messages.iter().filter(|m| !m.notification).map(|m| m.t).max().unwrap_or(0),
                "messages": c.messages.iter().map(|m| json!({
                    "id": m.id, "fromMe": m.from_me, "author": m.author, "body": m.body,
                    "type": m.kind, "t": m.t, "ack": m.ack, "media": m.media,
                    "notification": m.notification,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    /// What the host must store for the chats, newest activity first.
    pub fn expected_chats(&self) -> Vec<Chat> {
        let mut v: Vec<Chat> = self
            .chats
            .iter()
            .map(|c| Chat {
                id: c.id.clone(),
                name: Some(c.name.clone()),
                is_group: c.is_group,
                unread_count: c.unread.max(0) as u32,
                archived: c.archive,
                pinned: c.pin,
                last_message_at: c
                    .messages
                    .iter()
                    .filter(|m| !m.notification)
                    .map(|m| m.t * 1000)
                    .max(),
            })
            .collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.last_message_at));
        v
    }

    /// What a sync must store of a message's seeded reactions: the current
    /// ones (a taken-back reaction is not shown by the page).
    fn reactions_of(&self, message_id: &str) -> wasync::domain::ChangeState {
        let mut changes = wasync::domain::ChangeState::default();
        for r in self
            .reactions
            .iter()
            .filter(|r| r.message_id == message_id && !r.emoji.is_empty())
        {
            changes.set_reaction(&r.reactor, &r.emoji, r.at);
        }
        changes
    }

    /// The newest `limit` messages of chat `chat_id` as the host must store
    /// them, oldest first.
    pub fn expected_messages(&self, chat_id: &str, limit: usize) -> Vec<Message> {
        let chat = self
            .chats
            .iter()
            .find(|c| c.id == chat_id)
            .expect("seeded chat");
        let all: Vec<Message> = chat
            .messages
            .iter()
            .filter(|m| !m.notification)
            .map(|m| Message {
                id: m.id.clone(),
                chat_id: chat.id.clone(),
                from: if m.from_me {
                    ME.to_owned()
                } else {
                    chat.id.clone()
                },
                to: if m.from_me {
                    chat.id.clone()
                } else {
                    ME.to_owned()
                },
                author: m.author.clone(),
                body: Some(m.body.clone()),
                kind: m.kind.clone(),
                timestamp: m.t * 1000,
                from_me: m.from_me,
                has_media: m.media,
                ack: m.ack,
                quoted_id: None,
                tags: vec![],
                attributes: Default::default(),
                changes: self.reactions_of(&m.id),
            })
            .collect();
        let from = all.len().saturating_sub(limit);
        all[from..].to_vec()
    }
}

/// Page behaviour a test switches.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// `"new"` (`loadEarlierMsgs({chat})`) or `"old"` (`(chat, msgs)`).
    pub load_style: String,
    /// A module `window.require` refuses, e.g. `WAWebCollections`.
    pub missing_module: Option<String>,
    /// QR rotation period.
    pub qr_every_ms: u64,
    /// Codes (QR or pairing) shown before the page goes idle (retry button).
    pub qr_rotations: u32,
    /// Pairing code refresh period.
    pub pairing_code_every_ms: u64,
    /// Messages loaded with a chat before any `loadEarlierMsgs`.
    pub initial_loaded: u32,
    /// Messages per `loadEarlierMsgs` page.
    pub page_size: u32,
}

impl Default for PageConfig {
    fn default() -> Self {
        Self {
            load_style: "new".into(),
            missing_module: None,
            qr_every_ms: 700,
            qr_rotations: 4,
            pairing_code_every_ms: 3_000,
            initial_loaded: 5,
            page_size: 10,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    config: Option<PageConfig>,
    commands: Vec<Value>,
    page_loads: u64,
    reports: Vec<Value>,
}

/// A running fixture server.
pub struct WhatsAppFixture {
    pub url: String,
    pub seed: Seed,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    http: reqwest::Client,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl WhatsAppFixture {
    /// Serves the standard seed on a free loopback port.
    pub async fn start() -> WhatsAppFixture {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fixture bind");
        let addr: SocketAddr = listener.local_addr().expect("fixture addr");
        let seed = Seed::standard();
        let state = Arc::new(Mutex::new(State {
            config: Some(PageConfig::default()),
            ..Default::default()
        }));
        let stop = CancellationToken::new();
        let seed_json = Arc::new(seed.to_json());
        {
            let state = state.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = stop.cancelled() => return,
                        r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    };
                    let state = state.clone();
                    let seed_json = seed_json.clone();
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            let seed_json = seed_json.clone();
                            async move { Ok::<_, Infallible>(handle(req, &state, &seed_json).await) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                }
            });
        }
        WhatsAppFixture {
            url: format!("http://{addr}/"),
            seed,
            state,
            stop,
            http: reqwest::Client::new(),
        }
    }

    async fn control(&self, command: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}control/{command}", self.url))
            .json(&body)
            .send()
            .await
            .expect("fixture control");
        assert!(r.status().is_success(), "fixture control {command}");
    }

    /// The phone scans the current QR code.
    pub async fn scan(&self) {
        self.control("scan", json!({})).await;
    }

    /// The phone's user types `code` (the page refuses one it does not
    /// show, and reports either way).
    pub async fn enter_code(&self, code: &str) {
        self.control("enterCode", json!({ "code": code })).await;
    }

    /// A message arrives in `chat_id`; returns its id.
    pub async fn incoming(&self, chat_id: &str, body: &str) -> String {
        let id = format!("false_{chat_id}_LIVE{:016X}", rand_u64());
        self.control(
            "message",
            json!({"id": id, "chatId": chat_id, "body": body, "t": wasync::domain::now_ms() / 1000}),
        )
        .await;
        id
    }

    /// A sent message's delivery state changes.
    pub async fn ack(&self, id: &str, ack: i32) {
        self.control("ack", json!({"id": id, "ack": ack})).await;
    }

    /// The sender edits message `id` (its text, or a media message's
    /// caption) at `at` (ms).
    pub async fn edit(&self, id: &str, body: &str, at: i64) {
        self.control("edit", json!({"id": id, "body": body, "at": at}))
            .await;
    }

    /// Message `id` is deleted for everyone.
    pub async fn revoke(&self, id: &str) {
        self.control("revoke", json!({ "id": id })).await;
    }

    /// `reactor` reacts to message `id` with `emoji` (empty: takes it back)
    /// at `at` (ms).
    pub async fn react(&self, id: &str, reactor: &str, emoji: &str, at: i64) {
        self.control(
            "react",
            json!({"id": id, "reactor": reactor, "emoji": emoji, "at": at}),
        )
        .await;
    }

    /// The connection state changes (e.g. `CONFLICT`, `UNPAIRED`).
    pub async fn state(&self, state: &str) {
        self.control("state", json!({ "state": state })).await;
    }

    /// The phone unlinks this device.
    pub async fn logout(&self) {
        self.control("logout", json!({})).await;
    }

    /// The page reloads itself.
    pub async fn reload(&self) {
        self.control("reload", json!({})).await;
    }

    /// Changes what pages loaded from now on do.
    pub fn configure(&self, f: impl FnOnce(&mut PageConfig)) {
        let mut s = lock(&self.state);
        f(s.config.get_or_insert_with(PageConfig::default));
    }

    /// How many times the page was served.
    pub fn page_loads(&self) -> u64 {
        lock(&self.state).page_loads
    }

    /// What the page reported (e.g. the `loadEarlierMsgs` calls it saw).
    pub fn reports(&self) -> Vec<Value> {
        lock(&self.state).reports.clone()
    }
}

impl Drop for WhatsAppFixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

fn response(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .expect("response")
}

async fn handle(
    req: Request<Incoming>,
    state: &Mutex<State>,
    seed: &Value,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.as_str(), path.as_str()) {
        ("GET", "/control/next") => {
            let after: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("after="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let s = lock(state);
            let cmds: Vec<Value> = s.commands.iter().skip(after).cloned().collect();
            response(
                StatusCode::OK,
                "application/json",
                json!({"commands": cmds, "next": s.commands.len()}).to_string(),
            )
        }
        ("POST", "/fixture/report") => {
            lock(state).reports.push(body);
            response(StatusCode::OK, "application/json", "{}")
        }
        ("POST", p) if p.starts_with("/control/") => {
            let name = p.trim_start_matches("/control/").to_owned();
            let mut s = lock(state);
            let id = s.commands.len() + 1;
            s.commands
                .push(json!({"id": id, "command": name, "data": body}));
            response(
                StatusCode::OK,
                "application/json",
                json!({ "id": id }).to_string(),
            )
        }
        ("GET", p) if p == "/" || p.is_empty() => {
            let mut s = lock(state);
            s.page_loads += 1;
            let c = s.config.clone().unwrap_or_default();
            let cfg = json!({
                "seed": seed,
                "loadStyle": c.load_style,
                "missingModule": c.missing_module,
                "qrEveryMs": c.qr_every_ms,
                "qrRotations": c.qr_rotations,
                "pairingCodeEveryMs": c.pairing_code_every_ms,
                "initialLoaded": c.initial_loaded,
                "pageSize": c.page_size,
                "controlCursor": s.commands.len(),
            });
            // `</` cannot end the script element early inside JSON.
            let cfg = cfg.to_string().replace("</", "<\\/");
            let html = PAGE.replace("/*FIXTURE_CONFIG*/null", &cfg);
            response(StatusCode::OK, "text/html; charset=utf-8", html)
        }
        _ => response(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}
