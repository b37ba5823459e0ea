use super::account::CODE_ALPHABET;
use super::*;

fn account(v: serde_json::Value) -> Account {
    Account::new(SimulatorConfig::from_options(&serde_json::json!({ "simulator": v })).unwrap())
}

/// Values that would overflow a timer, spin the store, or make a huge
/// account are refused by name at create, never reaching a task.
#[test]
fn unbounded_options_are_refused_by_name() {
    let check = |v: serde_json::Value, name: &str| {
        let err = SimulatorConfig::from_options(&serde_json::json!({ "simulator": v }))
            .expect_err("refused");
        assert!(err.to_string().contains(name), "{name}: {err}");
    };
    check(serde_json::json!({"scanAfterMs": u64::MAX}), "scanAfterMs");
    check(serde_json::json!({"qrEveryMs": u64::MAX}), "qrEveryMs");
    check(serde_json::json!({"qrEveryMs": 0}), "qrEveryMs");
    check(
        serde_json::json!({"fetchLatencyMs": 1u64 << 62}),
        "fetchLatencyMs",
    );
    check(
        serde_json::json!({"liveMessageEveryMs": 1}),
        "liveMessageEveryMs",
    );
    check(
        serde_json::json!({"liveMessageEveryMs": 0}),
        "liveMessageEveryMs",
    );
    check(serde_json::json!({"maxQrAttempts": 0}), "maxQrAttempts");
    check(
        serde_json::json!({"maxQrAttempts": u32::MAX}),
        "maxQrAttempts",
    );
    check(serde_json::json!({"chats": MAX_CHATS + 1}), "chats");
    check(
        serde_json::json!({"messagesPerChat": vec![1; MAX_PER_CHAT_LIST + 1]}),
        "messagesPerChat",
    );
    assert!(
        SimulatorConfig::from_options(&serde_json::json!({"simulator": {
            "scanAfterMs": MAX_DELAY_MS, "qrEveryMs": MAX_DELAY_MS,
            "liveMessageEveryMs": MIN_LIVE_EVERY_MS, "maxQrAttempts": MAX_QR_ATTEMPTS
        }}))
        .is_ok(),
        "the bounds themselves are fine"
    );
}

#[test]
fn same_seed_same_account() {
    let a = account(serde_json::json!({"chats": 3, "messagesPerChat": [50, 75, 100], "seed": 7}));
    let b = account(serde_json::json!({"chats": 3, "messagesPerChat": [50, 75, 100], "seed": 7}));
    let c = account(serde_json::json!({"chats": 3, "messagesPerChat": [50, 75, 100], "seed": 8}));
    assert_eq!(a.newest(2, 100), b.newest(2, 100));
    assert_ne!(a.chat(0).id, c.chat(0).id);
    assert_eq!(a.newest(0, 100).len(), 50);
    assert_eq!(a.newest(1, 100).len(), 75);
    assert_eq!(a.newest(2, 10).len(), 10);
    assert_eq!(a.expected_total(100), 225);
    assert_eq!(a.expected_total(60), 50 + 60 + 60);
}

#[test]
fn ids_are_unique_and_messages_ordered() {
    let a = account(serde_json::json!({"chats": 300, "messagesPerChat": 40}));
    let mut chat_ids = std::collections::HashSet::new();
    let mut msg_ids = std::collections::HashSet::new();
    for i in 0..300 {
        let chat = a.chat(i);
        assert!(chat_ids.insert(chat.id.clone()), "duplicate chat id");
        let msgs = a.newest(i, 40);
        assert!(msgs.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        assert_eq!(
            msgs.last().unwrap().timestamp,
            chat.last_message_at.unwrap()
        );
        for m in msgs {
            assert!(msg_ids.insert(m.id), "duplicate message id");
        }
    }
    // Chats come newest activity first.
    assert!(a.chat(0).last_message_at > a.chat(1).last_message_at);
}

#[test]
fn bad_options_are_named() {
    for (opts, needle) in [
        (serde_json::json!({"simulator": {"chats": -1}}), "simulator"),
        (
            serde_json::json!({"simulator": {"bogus": 1}}),
            "unknown field",
        ),
        (
            serde_json::json!({"simulator": {"qrEveryMs": 0}}),
            "qrEveryMs",
        ),
        (
            serde_json::json!({"simulator": {"chats": 2_000_000}}),
            "chats",
        ),
    ] {
        let err = SimulatorConfig::from_options(&opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[tokio::test]
async fn injected_failures_then_success() {
    let (tx, _rx) = mpsc::channel(8);
    let sid = SessionId::parse("t").unwrap();
    let opts = serde_json::json!({"simulator": {"chats": 2, "messagesPerChat": 3, "failFetch": {"2": 2}, "fetchLatencyMs": 0, "scanAfterMs": null}});
    let client = SimulatorProvider
        .start(&sid, &opts, false, tx)
        .await
        .unwrap();
    let chats = client.list_chats().await.unwrap();
    assert_eq!(client.fetch_messages(&chats[0], 10).await.unwrap().len(), 3);
    assert!(client.fetch_messages(&chats[1], 10).await.is_err());
    assert!(client.fetch_messages(&chats[1], 10).await.is_err());
    assert_eq!(client.fetch_messages(&chats[1], 10).await.unwrap().len(), 3);
}

#[test]
fn pairing_codes_are_deterministic_and_look_like_whatsapps() {
    let phone = PhoneNumber::parse("+49 151 2345678").unwrap();
    let other = PhoneNumber::parse("+49 151 2345679").unwrap();
    let a = pairing_code(1, &phone, 1);
    assert_eq!(a, pairing_code(1, &phone, 1));
    assert_ne!(a, pairing_code(1, &phone, 2), "a refresh changes it");
    assert_ne!(a, pairing_code(2, &phone, 1));
    assert_ne!(a, pairing_code(1, &other, 1));
    assert_eq!(a.len(), 9);
    assert_eq!(&a[4..5], "-");
    assert!(
        a.bytes()
            .filter(|b| *b != b'-')
            .all(|b| CODE_ALPHABET.contains(&b))
    );
}

#[tokio::test]
async fn a_phone_number_gets_pairing_codes_instead_of_qr_codes() {
    let (tx, mut rx) = mpsc::channel(8);
    let sid = SessionId::parse("t").unwrap();
    let opts = serde_json::json!({
        "login": {"phoneNumber": "+491512345678"},
        "simulator": {"pairingCodeEveryMs": 40, "scanAfterMs": 200, "maxQrAttempts": 50, "seed": 3}
    });
    let _client = SimulatorProvider
        .start(&sid, &opts, false, tx)
        .await
        .unwrap();
    let phone = PhoneNumber::parse("+491512345678").unwrap();
    let mut codes = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            ClientEvent::PairingCode { code } => codes.push(code),
            ClientEvent::Qr { .. } => panic!("no QR codes for a phone number"),
            ClientEvent::Ready { .. } => break,
            _ => {}
        }
    }
    assert!(codes.len() >= 2, "{codes:?}");
    for (i, c) in codes.iter().enumerate() {
        assert_eq!(c.attempt, i as u32 + 1);
        assert_eq!(c.code, pairing_code(3, &phone, c.attempt));
    }
}

#[tokio::test]
async fn unlinked_pairing_codes_time_out_by_name() {
    let (tx, mut rx) = mpsc::channel(8);
    let sid = SessionId::parse("t").unwrap();
    let opts = serde_json::json!({
        "login": {"phoneNumber": "+491512345678"},
        "simulator": {"pairingCodeEveryMs": 5, "scanAfterMs": null, "maxQrAttempts": 2}
    });
    let _client = SimulatorProvider
        .start(&sid, &opts, false, tx)
        .await
        .unwrap();
    let mut last = None;
    while let Some(ev) = rx.recv().await {
        last = Some(ev);
    }
    assert_eq!(
        last,
        Some(ClientEvent::Disconnected {
            reason: "pairing_code_timeout".into()
        })
    );
}

#[tokio::test]
async fn login_lifecycle_rotates_qr_then_scans() {
    let (tx, mut rx) = mpsc::channel(8);
    let sid = SessionId::parse("t").unwrap();
    // Several rotation periods before the scan (and attempts to spare),
    // so a loaded machine that delays timers still shows two codes.
    let opts = serde_json::json!({"simulator": {
        "qrEveryMs": 40, "scanAfterMs": 200, "maxQrAttempts": 50
    }});
    let _client = SimulatorProvider
        .start(&sid, &opts, false, tx)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = rx.recv().await {
        let ready = matches!(ev, ClientEvent::Ready { .. });
        seen.push(ev);
        if ready {
            break;
        }
    }
    let qrs = seen
        .iter()
        .filter(|e| matches!(e, ClientEvent::Qr { .. }))
        .count();
    assert!(qrs >= 2, "{seen:?}");
    assert!(matches!(seen[seen.len() - 2], ClientEvent::Authenticated));
}

/// The change schedule is a pure function of the options: the same plan
/// every time, each kind on its own messages, the out-of-order pair newer
/// first; bad counts are refused by name.
#[test]
fn the_change_plan_is_predictable() {
    let shape = serde_json::json!({"chats": 2, "messagesPerChat": [3, 2], "changes": {
        "edits": 1, "revokes": 1, "acks": 1, "reactions": 1, "unreactions": 1,
        "outOfOrder": true, "beforeMessage": true}});
    let a = account(shape.clone());
    let plan = a.change_plan();
    assert_eq!(plan, account(shape).change_plan());
    let updates: Vec<&crate::domain::MessageUpdate> = plan
        .iter()
        .filter_map(|s| match s {
            changes::Step::Change(u) => Some(u),
            changes::Step::Message(_) => None,
        })
        .collect();
    // edit, revoke, ack, reaction, unreaction, two edits, two early ones.
    assert_eq!(updates.len(), 9);
    // The newest message of chat 1, then of chat 2, then the second newest.
    assert_eq!(updates[0].message_id, a.newest(0, 1)[0].id);
    assert_eq!(updates[1].message_id, a.newest(1, 1)[0].id);
    assert_eq!(updates[2].message_id, a.newest(0, 2)[0].id);
    assert_eq!(updates[4].message_id, updates[3].message_id);
    assert!(updates[5].change.beats(&updates[6].change), "newer first");
    assert!(matches!(plan.last(), Some(changes::Step::Message(m)) if m.id == a.early_message().id));
    assert!(
        a.changed(0, 10)
            .iter()
            .any(|m| m.body.as_deref() == Some("out of order: newer"))
            || a.changed(1, 10)
                .iter()
                .any(|m| m.body.as_deref() == Some("out of order: newer"))
    );
    for (bad, name) in [
        (
            serde_json::json!({"reactions": 1, "unreactions": 2}),
            "unreactions",
        ),
        (
            serde_json::json!({"edits": changes::MAX_CHANGES + 1}),
            "edits",
        ),
        (serde_json::json!({"everyMs": MAX_DELAY_MS + 1}), "everyMs"),
        (serde_json::json!({"bogus": 1}), "unknown field"),
    ] {
        let err =
            SimulatorConfig::from_options(&serde_json::json!({"simulator": {"changes": bad}}))
                .unwrap_err()
                .to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
}

/// The address book is a pure function of the seed: private chats' people
/// and the pool, with some `@lid`s and business accounts; group authors
/// are members, named by `@lid` or by number, so one person writes under
/// both ids somewhere in the default account.
#[test]
fn contacts_are_deterministic_and_authors_use_both_ids() {
    let a = account(serde_json::json!({}));
    let book = a.address_book();
    assert_eq!(book, account(serde_json::json!({})).address_book());
    assert_eq!(book.contacts.len() as u64, a.expected_contacts());
    assert!(book.contacts.iter().any(|c| c.lid.is_some()));
    assert!(book.contacts.iter().any(|c| c.is_business));
    let mut ids = std::collections::HashSet::new();
    for c in &book.contacts {
        assert!(ids.insert(c.id.clone()), "duplicate {}", c.id);
        if let Some(l) = &c.lid {
            assert!(ids.insert(l.clone()), "duplicate {l}");
        }
    }
    let mut by_lid = std::collections::HashSet::new();
    let mut by_number = std::collections::HashSet::new();
    for i in 0..a.cfg.chats {
        for m in a.newest(i, 1000) {
            let Some(author) = m.author else { continue };
            let c = book
                .contacts
                .iter()
                .find(|c| c.answers_to(&author))
                .unwrap_or_else(|| panic!("author {author} is no contact"));
            if author.ends_with("@lid") {
                by_lid.insert(c.id.clone());
            } else {
                by_number.insert(c.id.clone());
            }
        }
    }
    assert!(
        by_lid.intersection(&by_number).next().is_some(),
        "someone writes by @lid and by number"
    );
    assert_eq!(
        account(serde_json::json!({"contacts": 0})).expected_contacts(),
        (0..8).filter(|i| !a.chat(*i).is_group).count() as u64
    );
}
