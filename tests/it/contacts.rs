//! Contacts end to end (issue 16, item 4): a simulated account's address
//! book is synced before the chats on both stores, counted exactly in the
//! `contacts` event, `session_ready` and `GET .../contacts`, groups keep
//! their members, and a `@lid` author and a phone-number author of one
//! person lead to one contact.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};
use wasync::browser::simulator::{Account, SimulatorConfig};
use wasync::config::{MONGODB_DB, MONGODB_URI};
use wasync::domain::SessionId;
use wasync_tests::mongo::{fresh_db_name, test_mongodb_uri};
use wasync_tests::{HostOptions, TestHost, fast_tuning};

fn fast(mut sim: Value) -> Value {
    let o = sim.as_object_mut().unwrap();
    o.entry("qrEveryMs").or_insert(json!(40));
    o.entry("scanAfterMs").or_insert(json!(100));
    o.entry("fetchLatencyMs").or_insert(json!(0));
    sim
}

fn account(sim: &Value) -> Account {
    Account::new(SimulatorConfig::from_options(&json!({ "simulator": sim })).unwrap())
}

/// Syncs a simulated account on `host` and checks everything contacts.
async fn contacts_end_to_end(host: &TestHost, session: &str) {
    let sim = json!({"chats": 16, "messagesPerChat": 40, "contacts": 9});
    let acc = account(&sim);
    let want = acc.expected_contacts();
    let mut ws = host.ws().await;
    host.create_sim(session, fast(sim)).await;
    ws.join(session).await;
    let events = ws.until("sync_complete").await;
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sync_chats")
        .map(|e| &e["data"])
        .collect();
    assert_eq!(progress[0]["phase"], "start");
    assert_eq!(progress[1]["phase"], "contacts", "{:?}", progress[1]);
    assert_eq!(progress[1]["contacts"], want);
    assert_eq!(progress[1]["seq"], 1);
    assert_eq!(progress[2]["phase"], "chat");

    // Paged by id: every contact once, exactly as many as the account has.
    let mut listed: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!(
                "/whatsapp-web/session/{session}/contacts?limit=7&cursor={}",
                urlencoding(c)
            ),
            None => format!("/whatsapp-web/session/{session}/contacts?limit=7"),
        };
        let (status, page) = host.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let contacts = page["contacts"].as_array().unwrap();
        assert!(contacts.len() <= 7);
        listed.extend(contacts.iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed.len() as u64, want);
    let ids: Vec<&str> = listed.iter().map(|c| c["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "by id, each once");
    let book = acc.address_book();
    let by_id: BTreeMap<&str, &Value> = listed
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c))
        .collect();
    for c in &book.contacts {
        let got = by_id[c.id.as_str()];
        assert_eq!(got["sessionId"], session);
        assert_eq!(got["name"], json!(c.name));
        assert_eq!(got["pushname"], json!(c.pushname));
        assert_eq!(got["number"], json!(c.number));
        assert_eq!(got["isBusiness"], c.is_business);
        assert_eq!(got["lid"], json!(c.lid));
    }

    // `session_ready` counts them too.
    let store = host.app().store();
    let sid = SessionId::parse(session).unwrap();
    let ready = store
        .session_events(&sid)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.pattern == "session_ready")
        .expect("session_ready");
    assert_eq!(ready.data["contacts"], want);

    // Groups keep their members: the account, the creator, an admin.
    let (_, chats) = host
        .get(&format!("/whatsapp-web/session/{session}/chats?limit=100"))
        .await;
    let mut groups = 0;
    for (i, c) in chats["chats"].as_array().unwrap().iter().enumerate() {
        let chat = acc.chat(i as u32);
        assert_eq!(c["id"], chat.id.as_str());
        if chat.is_group {
            groups += 1;
            assert_eq!(
                c["participants"],
                serde_json::to_value(acc.participants(i as u32)).unwrap()
            );
            assert_eq!(c["participants"][1]["isSuperAdmin"], true);
        } else {
            assert!(c.get("participants").is_none(), "{c}");
        }
    }
    assert!(groups > 0, "the account has groups");

    // A `@lid` message and a phone-number message of one person, as
    // stored, resolve to the same contact.
    let mut authors: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (i, c) in chats["chats"].as_array().unwrap().iter().enumerate() {
        if !acc.chat(i as u32).is_group {
            continue;
        }
        let chat_id = c["id"].as_str().unwrap();
        let (_, page) = host
            .get(&format!(
                "/whatsapp-web/session/{session}/chats/{}/messages?limit=1000",
                urlencoding(chat_id)
            ))
            .await;
        for m in page["messages"].as_array().unwrap() {
            if let Some(a) = m["author"].as_str() {
                let person = book
                    .contacts
                    .iter()
                    .find(|c| c.answers_to(a))
                    .unwrap_or_else(|| panic!("{a} is nobody"));
                authors
                    .entry(person.id.clone())
                    .or_default()
                    .insert(a.to_owned());
            }
        }
    }
    let (person, both) = authors
        .iter()
        .find(|(_, ids)| ids.len() == 2)
        .expect("someone wrote by @lid and by number");
    let mut resolved = HashSet::new();
    for a in both {
        let (status, c) = host
            .get(&format!(
                "/whatsapp-web/session/{session}/contacts/{}",
                urlencoding(a)
            ))
            .await;
        assert_eq!(status, 200, "{a}: {c}");
        resolved.insert(c["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(resolved, HashSet::from([person.clone()]));
    assert!(both.iter().any(|a| a.ends_with("@lid")));

    // Problems, not panics.
    let (status, p) = host
        .get(&format!(
            "/whatsapp-web/session/{session}/contacts/nobody%40c.us"
        ))
        .await;
    assert_eq!(
        (status, p["code"].as_str()),
        (404, Some("contact_not_found"))
    );
    let (status, p) = host
        .get(&format!("/whatsapp-web/session/{session}/contacts?limit=0"))
        .await;
    assert_eq!((status, p["code"].as_str()), (400, Some("invalid_query")));
    let (status, p) = host
        .get("/whatsapp-web/session/no-such-session-here/contacts")
        .await;
    assert_eq!((status, p["code"].as_str()), (404, Some("not_found")));

    // A re-sync finds the same book: nothing added.
    let (status, body) = host
        .post(
            &format!("/whatsapp-web/session/{session}/sync-chats"),
            json!({"mode": "incremental"}),
        )
        .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    ws.until("sync_complete").await;
    assert_eq!(store.count_contacts(&sid).await.unwrap(), want);

    // A purge takes them.
    let (status, _) = host
        .delete(&format!("/whatsapp-web/session/{session}?purge=true"))
        .await;
    assert!(status < 300, "{status}");
    wasync_tests::assert_eventually!(store.count_contacts(&sid).await.unwrap() == 0);
}

fn urlencoding(s: &str) -> String {
    s.replace('@', "%40")
}

#[tokio::test]
async fn contacts_sync_exactly_on_the_embedded_store() {
    let host = TestHost::spawn().await;
    contacts_end_to_end(&host, "contacts-embedded").await;
    host.stop().await;
}

#[tokio::test]
async fn contacts_sync_exactly_on_mongodb() {
    let db = fresh_db_name("contacts");
    let host = TestHost::spawn_with(
        HostOptions {
            tuning: fast_tuning(),
            ..Default::default()
        }
        .var(MONGODB_URI, test_mongodb_uri())
        .var(MONGODB_DB, db),
    )
    .await;
    contacts_end_to_end(&host, "contacts-mongo").await;
    host.stop().await;
}

/// Through the webdriver provider against the fixture page: the page's
/// Contact collection (minus the account itself and the groups) is stored
/// exactly, the `@lid` ↔ number mapping included, the group keeps its
/// members, and a group message by `@lid` and one by number of the same
/// member resolve to one contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdriver_contacts_and_group_members_are_stored() {
    use wasync_tests::whatsapp_fixture::{MEMBER_LID, WhatsAppFixture};
    crate::webdriver::require_browser();
    let fixture = WhatsAppFixture::start().await;
    let host = crate::webdriver::host_for(&fixture).await;
    let id = "wd-contacts";
    let _ws = crate::webdriver::log_in(&host, &fixture, id, 20, "sync_complete").await;
    let store = host.app().store();
    let sid = SessionId::parse(id).unwrap();

    let mut want = fixture.seed.contacts.clone();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    let got: Vec<_> = store
        .list_contacts(&sid, 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.contact)
        .collect();
    assert_eq!(got, want, "contacts");
    let ready = store
        .session_events(&sid)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.pattern == "session_ready")
        .expect("session_ready");
    assert_eq!(ready.data["contacts"], want.len());

    for g in &fixture.seed.groups {
        let chat = store.get_chat(&sid, &g.chat_id).await.unwrap().unwrap();
        assert_eq!(
            chat.participants, g.participants,
            "members of {}",
            g.chat_id
        );
    }

    let group = &fixture.seed.groups[0].chat_id;
    let authors: HashSet<String> = store
        .list_messages(&sid, group, 1000, None)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| m.message.author)
        .collect();
    assert!(authors.contains(MEMBER_LID), "{authors:?}");
    assert!(authors.contains("4915100000200@c.us"), "{authors:?}");
    for a in [MEMBER_LID, "4915100000200@c.us"] {
        let (status, c) = host
            .get(&format!(
                "/whatsapp-web/session/{id}/contacts/{}",
                urlencoding(a)
            ))
            .await;
        assert_eq!(status, 200, "{a}: {c}");
        assert_eq!(c["id"], "4915100000200@c.us", "{a}");
        assert_eq!(c["lid"], MEMBER_LID);
    }
    // Known only by `@lid`: stored under it.
    let (status, c) = host
        .get(&format!(
            "/whatsapp-web/session/{id}/contacts/300000000000300%40lid"
        ))
        .await;
    assert_eq!((status, &c["pushname"]), (200, &json!("Hana")), "{c}");
    host.delete(&format!(
        "/whatsapp-web/session/{id}?logout=true&purge=true"
    ))
    .await;
    host.stop().await;
}
