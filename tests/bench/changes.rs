//! U1: applying message changes (edits, revokes, acks, reactions) in
//! place, beside inserting the same messages into the same store: the cost
//! of keeping the stored account true after the sync, in the unit a sync
//! is measured in.

use std::time::Instant;

use wasync::domain::{Message, MessageChange, MessageUpdate, SessionId};
use wasync::storage::Store;

use super::Row;

/// Changes (and messages) per store call: a burst the actor or a spool
/// flush could hand over at once.
const BATCH: usize = 1_000;

fn message(n: usize) -> Message {
    let chat = format!("49151{:08}@c.us", n % 50);
    Message {
        id: format!("false_{chat}_BENCH{n:010}"),
        chat_id: chat.clone(),
        from: chat,
        to: "4915100000000@c.us".into(),
        author: None,
        body: Some(format!("bench message {n} with a few words of text")),
        kind: "chat".into(),
        timestamp: 1_735_689_600_000 + n as i64 * 1_000,
        from_me: n.is_multiple_of(3),
        has_media: false,
        ack: 1,
        quoted_id: None,
        tags: vec![],
        attributes: Default::default(),
        changes: Default::default(),
    }
}

/// Change `n` of message `m`: the four kinds in turn.
fn change(m: &Message, n: usize) -> MessageUpdate {
    let at = m.timestamp + 60_000;
    let change = match n % 4 {
        0 => MessageChange::Edit {
            body: Some(format!("edited {n}")),
            at,
        },
        1 => MessageChange::Ack { ack: 3, at },
        2 => MessageChange::Reaction {
            reactor: format!("4917{n:08}@c.us"),
            emoji: Some("👍".into()),
            at,
        },
        _ => MessageChange::Revoke { at },
    };
    MessageUpdate {
        chat_id: m.chat_id.clone(),
        message_id: m.id.clone(),
        change,
    }
}

/// `(inserts/s, changes/s, session)` of `n` messages, then `n` changes of
/// them.
async fn measure(store: &dyn Store, n: usize) -> (f64, f64, SessionId) {
    let sid = SessionId::parse(&format!(
        "bench-changes-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ))
    .unwrap();
    let messages: Vec<Message> = (0..n).map(message).collect();
    let t = Instant::now();
    for batch in messages.chunks(BATCH) {
        store.put_messages(&sid, batch).await.unwrap();
    }
    let inserts = n as f64 / t.elapsed().as_secs_f64();
    let changes: Vec<MessageUpdate> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| change(m, i))
        .collect();
    let t = Instant::now();
    for batch in changes.chunks(BATCH) {
        let out = store.apply_changes(&sid, batch, false).await.unwrap();
        assert!(
            out.iter()
                .all(|o| *o == wasync::domain::ChangeOutcome::Applied)
        );
    }
    let applied = n as f64 / t.elapsed().as_secs_f64();
    (inserts, applied, sid)
}

/// Updates/s of the driver's plainest update of the same `n` messages of
/// session `sid` in the store's own collection: `$set` of a new body and
/// ack by the unique key, one statement per message, [`BATCH`] statements
/// a command, `w: majority, j: true`, no read and no condition. What the
/// server itself allows for an update, beside which the store's changes
/// (a read, a conditional pipeline) are measured.
async fn raw_updates(db: &mongodb::Database, sid: &SessionId, n: usize) -> f64 {
    use mongodb::bson::doc;
    let t = Instant::now();
    for part in (0..n).collect::<Vec<_>>().chunks(BATCH) {
        let updates: Vec<_> = part
            .iter()
            .map(|&i| {
                doc! {
                    "q": { "sessionId": sid.as_str(), "messageId": message(i).id },
                    "u": { "$set": { "body": format!("raw {i}"), "ack": 4 } },
                }
            })
            .collect();
        let out = db
            .run_command(doc! {
                "update": wasync::storage::mongo::schema::MESSAGES,
                "updates": updates,
                "ordered": false,
                "writeConcern": { "w": "majority", "j": true },
            })
            .await
            .unwrap();
        assert_eq!(
            out.get_i32("nModified")
                .map(i64::from)
                .or_else(|_| out.get_i64("nModified")),
            Ok(part.len() as i64),
            "{out}"
        );
    }
    n as f64 / t.elapsed().as_secs_f64()
}

pub async fn row(quick: bool) -> Row {
    // The store's own log (`RUST_LOG=wasync::storage=debug`: where a
    // call's time goes) when asked for.
    wasync_tests::init_logs();
    let n = if quick { 500 } else { 10_000 };
    let dir = tempfile::tempdir().unwrap();
    let embedded =
        wasync::storage::embedded::EmbeddedStore::open(&dir.path().join("bench.redb")).unwrap();
    let (e_ins, e_chg, _) = measure(&embedded, n).await;
    eprintln!("U1 embedded: {e_ins:.0} inserts/s, {e_chg:.0} changes/s");
    let mut measure_text = format!(
        "apply {n} message changes (edit, ack, reaction, revoke in turn; {BATCH} per call): embedded {e_chg:.0} changes/s"
    );
    let mut baseline = format!(
        "insert the same {n} messages ({BATCH} per call), same store: embedded {e_ins:.0} msgs/s"
    );
    let mut ratios = vec![e_chg / e_ins];
    // MongoDB when a server is at hand: a fresh one where one can be
    // started (see `BenchServers`).
    if let Some(servers) = wasync_tests::mongo::BenchServers::from_env() {
        let (uri, _server) = servers.server().await;
        let db = wasync_tests::mongo::fresh_db_name("bench_changes");
        match wasync::storage::mongo::MongoStore::connect(&uri, &db).await {
            Ok(mongo) => {
                let (m_ins, m_chg, sid) = measure(&mongo, n).await;
                let raw = raw_updates(mongo.database(), &sid, n).await;
                eprintln!(
                    "U1 mongo: {m_ins:.0} inserts/s, {m_chg:.0} changes/s, {raw:.0} raw updates/s"
                );
                measure_text.push_str(&format!(
                    ", MongoDB {m_chg:.0} changes/s ({:.2}× the driver's plainest update of \
                     the same messages: `$set` by key, no read, {raw:.0} updates/s)",
                    m_chg / raw
                ));
                baseline.push_str(&format!(", MongoDB {m_ins:.0} msgs/s"));
                ratios.push(m_chg / m_ins);
                let _ = mongo.database().drop().await;
            }
            Err(e) => eprintln!("U1: MongoDB not measured: {e}"),
        }
    }
    let result = ratios
        .iter()
        .map(|r| format!("{r:.2}×"))
        .collect::<Vec<_>>()
        .join(" / ");
    let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    Row {
        id: "U1",
        measure: measure_text,
        baseline,
        result,
        target: "≥ 0.5× the store's insert rate",
        met: Some(worst >= 0.5),
    }
}
