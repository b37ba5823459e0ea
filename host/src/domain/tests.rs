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

/// One event of every kind, with the fields a frame may carry filled in.
fn every_server_event() -> Vec<ServerEvent> {
    let message = Message {
        id: "true_1@c.us_3EB0".into(),
        chat_id: "1@c.us".into(),
        from: "1@c.us".into(),
        to: "me@c.us".into(),
        author: None,
        body: Some("a \"quoted\" line\nwith ünïcode and \\ back".into()),
        kind: "chat".into(),
        timestamp: 1_700_000_000_000,
        from_me: false,
        has_media: false,
        ack: 2,
        quoted_id: None,
        tags: vec!["t".into()],
        attributes: [("k".to_owned(), "v".to_owned())].into(),
        changes: ChangeState::default(),
    };
    let progress = SyncProgress {
        session_id: "s".into(),
        sync_id: "y".into(),
        seq: 7,
        n_chats: 10,
        current_chat: 3,
        chat_id: Some("1@c.us".into()),
        messages_synced: 20,
        total_messages_synced: 60,
        phase: SyncPhase::Messages,
        done: false,
        contacts: None,
    };
    let events = vec![
        ServerEvent::SessionState(SessionSnapshot {
            session_id: "s".into(),
            status: SessionStatus::Ready,
            provider: "simulator".into(),
            qr: None,
            pairing_code: None,
            me: Some(Me {
                id: "me@c.us".into(),
                push_name: None,
            }),
            sync: Some(SyncView {
                status: SyncStatus::Running,
                progress: progress.clone(),
            }),
            metadata: [("team".to_owned(), "a".to_owned())].into(),
        }),
        ServerEvent::Qr {
            session_id: "s".into(),
            qr: "q".into(),
            attempt: 1,
            expires_at: 5,
        },
        ServerEvent::PairingCode {
            session_id: "s".into(),
            code: "ABCD-EFGH".into(),
            attempt: 1,
            expires_at: 5,
        },
        ServerEvent::Authenticated {
            session_id: "s".into(),
        },
        ServerEvent::AuthFailure {
            session_id: "s".into(),
            reason: "r".into(),
        },
        ServerEvent::Ready {
            session_id: "s".into(),
        },
        ServerEvent::SyncChats(progress),
        ServerEvent::SyncComplete(SyncComplete {
            session_id: "s".into(),
            sync_id: "y".into(),
            n_chats: 10,
            total_messages_synced: 100,
            duration_ms: 5,
        }),
        ServerEvent::SyncFailed(SyncFailed {
            session_id: "s".into(),
            sync_id: "y".into(),
            reason: "r".into(),
            current_chat: 3,
        }),
        ServerEvent::Message(StoredMessage {
            session_id: "s".into(),
            message,
        }),
        ServerEvent::MessageUpdated {
            session_id: "s".into(),
            chat_id: "1@c.us".into(),
            message_id: "m".into(),
            change: MessageChange::Reaction {
                reactor: "2@c.us".into(),
                emoji: None,
                at: 9,
            },
        },
        ServerEvent::Disconnected {
            session_id: "s".into(),
            reason: "r".into(),
        },
        ServerEvent::Error {
            code: "bad_json".into(),
            message: "m".into(),
        },
        ServerEvent::Pong {},
        ServerEvent::Left {
            session_id: "s".into(),
        },
    ];
    // Fails to compile when a kind is added, so it is added above too.
    for e in &events {
        match e {
            ServerEvent::SessionState(_)
            | ServerEvent::Qr { .. }
            | ServerEvent::PairingCode { .. }
            | ServerEvent::Authenticated { .. }
            | ServerEvent::AuthFailure { .. }
            | ServerEvent::Ready { .. }
            | ServerEvent::SyncChats(_)
            | ServerEvent::SyncComplete(_)
            | ServerEvent::SyncFailed(_)
            | ServerEvent::Message(_)
            | ServerEvent::MessageUpdated { .. }
            | ServerEvent::Disconnected { .. }
            | ServerEvent::Error { .. }
            | ServerEvent::Pong {}
            | ServerEvent::Left { .. } => {}
        }
    }
    events
}

#[test]
fn stamps_appended_to_the_frame_are_the_stamps_through_a_json_tree() {
    for host in ["h1", "host \"quoted\" \\ ü\n"] {
        for e in every_server_event() {
            let fast = e.to_frame_with(Some(host), None);
            assert_eq!(fast, e.to_frame_by_value(Some(host), None), "{e:?}");
            let v: serde_json::Value = serde_json::from_str(&fast).unwrap();
            assert_eq!(v["data"]["hostId"], host, "{fast}");
        }
    }
    // With metadata (the snapshot's own kept), and with neither, the same.
    let metadata: Metadata = [
        ("team".to_owned(), "b \"q\"".to_owned()),
        ("a".to_owned(), "ü".to_owned()),
    ]
    .into();
    for e in every_server_event() {
        for host in [Some("h1"), None] {
            let fast = e.to_frame_with(host, Some(&metadata));
            assert_eq!(fast, e.to_frame_by_value(host, Some(&metadata)), "{e:?}");
            let v: serde_json::Value = serde_json::from_str(&fast).unwrap();
            assert!(v["data"]["metadata"].is_object(), "{fast}");
        }
        assert_eq!(e.to_frame_with(None, None), e.to_frame());
        assert_eq!(e.to_frame_with(None, Some(&Metadata::new())), e.to_frame());
    }
}

#[test]
fn a_host_stamp_goes_inside_the_data_object_whatever_its_last_field() {
    for (frame, want) in [
        (
            r#"{"event":"pong","data":{}}"#,
            r#"{"event":"pong","data":{"hostId":"h"}}"#,
        ),
        (
            r#"{"event":"x","data":{"a":{}}}"#,
            r#"{"event":"x","data":{"a":{},"hostId":"h"}}"#,
        ),
        (
            r#"{"event":"x","data":{"data":{}}}"#,
            r#"{"event":"x","data":{"data":{},"hostId":"h"}}"#,
        ),
        (
            r#"{"event":"x","data":{"a":[{}]}}"#,
            r#"{"event":"x","data":{"a":[{}],"hostId":"h"}}"#,
        ),
    ] {
        assert_eq!(
            super::events::append_to_data(frame.to_owned(), r#""hostId":"h""#).as_deref(),
            Some(want)
        );
    }
    // Not a frame of that shape: the caller takes the general path.
    for other in [
        r#"{"data":{},"event":"x"}"#,
        "[]",
        "",
        r#"{"event":"x","data":1}"#,
    ] {
        assert_eq!(
            super::events::append_to_data(other.to_owned(), r#""hostId":"h""#),
            None,
            "{other}"
        );
    }
}
