//! Wire names and the rules of the pure types.

use super::*;

#[test]
fn every_session_status_round_trips_by_its_wire_name() {
    for s in SessionStatus::ALL {
        assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::Value::from(s.as_str())
        );
    }
    assert_eq!(SessionStatus::parse("nope"), None);
}

#[test]
fn session_ids_are_a_security_boundary() {
    assert!(SessionId::parse("abc_DEF-123").is_ok());
    assert!(SessionId::parse(&"a".repeat(64)).is_ok());
    assert_eq!(SessionId::parse(""), Err(InvalidSessionId::Empty));
    assert_eq!(
        SessionId::parse(&"a".repeat(65)),
        Err(InvalidSessionId::TooLong(65))
    );
    for bad in ["../x", "a/b", "a b", "a.b", "é", "a\0", "..", "x\n"] {
        assert_eq!(
            SessionId::parse(bad),
            Err(InvalidSessionId::BadCharacter),
            "{bad:?}"
        );
    }
}

#[test]
fn server_events_use_the_wire_names() {
    let ev = ServerEvent::Qr {
        session_id: "s".into(),
        qr: "q".into(),
        attempt: 2,
        expires_at: 5,
    };
    assert_eq!(
        serde_json::to_value(&ev).unwrap(),
        serde_json::json!({"event": "qr", "data": {"sessionId": "s", "qr": "q", "attempt": 2, "expiresAt": 5}})
    );
    let ev = ServerEvent::PairingCode {
        session_id: "s".into(),
        code: "ABCD-EFGH".into(),
        attempt: 1,
        expires_at: 5,
    };
    assert_eq!(
        serde_json::to_value(&ev).unwrap(),
        serde_json::json!({"event": "pairing_code", "data": {"sessionId": "s", "code": "ABCD-EFGH", "attempt": 1, "expiresAt": 5}})
    );
    let ev = ServerEvent::Error {
        code: "bad_json".into(),
        message: "m".into(),
    };
    assert_eq!(serde_json::to_value(&ev).unwrap()["event"], "error");
    assert_eq!(
        serde_json::to_value(ServerEvent::Pong {}).unwrap(),
        serde_json::json!({"event": "pong", "data": {}})
    );
}

#[test]
fn phone_numbers_are_normalised_or_refused() {
    for (raw, want) in [
        ("+4915123456789", "+4915123456789"),
        ("+49 151 234-5678", "+491512345678"),
        ("+1-555-0100-12", "+1555010012"),
        ("+1234567", "+1234567"),
        ("+123456789012345", "+123456789012345"),
    ] {
        assert_eq!(PhoneNumber::parse(raw).unwrap().as_str(), want, "{raw}");
    }
    for bad in [
        "",
        "+",
        "4915123456789",
        "0049 151 2345678",
        "+0151 2345678",
        "+123456",
        "+1234567890123456",
        "+49 (151) 2345678",
        "+49.151.2345678",
        "+49151234567x",
        "+４９１５１２３４５６７",
        "+49\n1512345678",
        &format!("+49{}1512345678", " ".repeat(40)),
    ] {
        let err = PhoneNumber::parse(bad).expect_err(bad);
        assert!(err.contains("7 to 15 digits"), "{err}");
    }
    assert_eq!(
        PhoneNumber::parse("+49 151-2345678").unwrap().digits(),
        "491512345678"
    );
}

#[test]
fn login_options_come_from_an_object_only() {
    let ok: LoginOptions =
        serde_json::from_value(serde_json::json!({"phoneNumber": "+49 151 2345678"})).unwrap();
    assert_eq!(ok.phone_number.as_str(), "+491512345678");
    assert_eq!(
        serde_json::to_value(&ok).unwrap(),
        serde_json::json!({"phoneNumber": "+491512345678"})
    );
    for bad in [
        serde_json::json!(["+491512345678"]),
        serde_json::json!("+491512345678"),
        serde_json::json!({}),
        serde_json::json!({"phoneNumber": "+49", "x": 1}),
        serde_json::json!({"phoneNumber": 491512345678u64}),
        serde_json::json!({"phoneNumber": "0151 2345678"}),
    ] {
        assert!(
            serde_json::from_value::<LoginOptions>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn pairing_codes_show_as_whatsapp_web_does() {
    assert_eq!(PairingCode::display("abcd1234"), "ABCD-1234");
    assert_eq!(PairingCode::display("ABCD-EFGH"), "ABCD-EFGH");
    assert_eq!(PairingCode::display("A,B,C,D,E,F,G,H"), "ABCD-EFGH");
    assert_eq!(PairingCode::display(" odd "), "odd");
}

#[test]
fn envelope_is_what_nestjs_reads() {
    let sid = SessionId::parse("s1").unwrap();
    let ev = OutboxEvent::new(
        "session_ready",
        &sid,
        serde_json::json!({"sessionId": "s1"}),
    );
    let body: serde_json::Value = serde_json::from_slice(&ev.envelope().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"pattern": "session_ready", "data": {"sessionId": "s1"}})
    );
}

#[test]
fn progress_serializes_with_design_field_names() {
    let p = SyncProgress {
        session_id: "s".into(),
        sync_id: "y".into(),
        seq: 1,
        n_chats: 3,
        current_chat: 1,
        chat_id: Some("A".into()),
        messages_synced: 0,
        total_messages_synced: 0,
        phase: SyncPhase::Chat,
        done: false,
        contacts: None,
    };
    let v = serde_json::to_value(&p).unwrap();
    for k in [
        "sessionId",
        "syncId",
        "seq",
        "nChats",
        "currentChat",
        "chatId",
        "messagesSynced",
        "totalMessagesSynced",
        "phase",
        "done",
    ] {
        assert!(v.get(k).is_some(), "{k} missing in {v}");
    }
    assert_eq!(v["phase"], "chat");
}
