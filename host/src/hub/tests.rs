use super::*;
use crate::domain::{SyncPhase, SyncProgress};

#[test]
fn every_client_writes_the_one_serialized_buffer() {
    let f = Frame::new(Some("s"), &ServerEvent::Pong {});
    let (a, b) = (f.clone().bytes(), f.bytes());
    assert_eq!(a.as_ptr(), f.text.as_ptr(), "no copy per client");
    assert_eq!(a.as_ptr(), b.as_ptr());
    assert_eq!(&a[..], f.text.as_bytes());
    let (p, q) = (f.payload(), f.clone().payload());
    assert_eq!(p.as_str().as_ptr(), f.text.as_ptr(), "the payload too");
    assert_eq!(q.as_str().as_ptr(), f.text.as_ptr());
}

fn progress(seq: u64) -> ServerEvent {
    ServerEvent::SyncChats(SyncProgress {
        session_id: "s".into(),
        sync_id: "y".into(),
        seq,
        n_chats: 10,
        current_chat: seq as u32,
        chat_id: None,
        messages_synced: 0,
        total_messages_synced: 0,
        phase: SyncPhase::Chat,
        done: false,
        contacts: None,
    })
}

fn ready() -> ServerEvent {
    ServerEvent::Ready {
        session_id: "s".into(),
    }
}

fn seq_of(f: &Frame) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(&f.text).unwrap();
    v["data"]["seq"].as_u64()
}

#[tokio::test]
async fn try_next_drains_in_order_without_waiting_and_stops_at_close() {
    let hub = Hub::new(QueueLimits::default());
    let c = hub.connect().unwrap();
    hub.join(&c, "s", ready).unwrap();
    assert!(c.next().await.is_some(), "the join's snapshot");
    assert!(c.try_next().is_none(), "nothing queued: no wait");
    for i in 0..3 {
        hub.publish("s", &progress(i));
    }
    let first = c.next().await.unwrap();
    let rest: Vec<_> = std::iter::from_fn(|| c.try_next()).collect();
    assert_eq!(seq_of(&first), Some(0));
    assert_eq!(
        rest.iter().map(seq_of).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    hub.publish("s", &progress(3));
    c.close("bye");
    assert!(c.try_next().is_none(), "a closed client yields nothing");
}

#[tokio::test]
async fn drain_into_takes_at_most_max_in_order_and_nothing_once_closed() {
    let hub = Hub::new(QueueLimits::default());
    let c = hub.connect().unwrap();
    hub.join(&c, "s", ready).unwrap();
    for i in 0..5 {
        hub.publish("s", &progress(i));
    }
    let mut out = Vec::new();
    assert_eq!(c.drain_into(&mut out, 3), 3);
    assert!(
        out[0].text.contains("\"ready\""),
        "the join's snapshot first"
    );
    assert_eq!(
        out[1..].iter().map(seq_of).collect::<Vec<_>>(),
        [Some(0), Some(1)]
    );
    out.clear();
    assert_eq!(c.drain_into(&mut out, 64), 3);
    assert_eq!(
        out.iter().map(seq_of).collect::<Vec<_>>(),
        [Some(2), Some(3), Some(4)]
    );
    assert_eq!(c.drain_into(&mut out, 64), 0, "empty");
    hub.publish("s", &progress(5));
    c.close("bye");
    assert!(c.is_closed());
    assert_eq!(c.drain_into(&mut out, 64), 0, "closed: nothing");
}

#[tokio::test]
async fn next_wakes_for_a_push_and_ends_at_close() {
    let hub = Hub::new(QueueLimits::default());
    let c = hub.connect().unwrap();
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.next().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.push(Frame::new(Some("s"), &ServerEvent::Pong {}));
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert!(got.is_some_and(|f| f.text.contains("pong")));
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.next().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.close("bye");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .expect("woken by the close")
        .unwrap();
    assert!(got.is_none());
}

#[tokio::test]
async fn slow_client_gets_latest_progress_and_every_lifecycle_event() {
    let hub = Hub::new(QueueLimits {
        coalesce_after: 1,
        ..Default::default()
    });
    let c = hub.connect().unwrap();
    hub.join(&c, "s", ready).unwrap();
    for i in 0..100 {
        hub.publish("s", &progress(i));
    }
    hub.publish("s", &ready());
    hub.publish("s", &progress(100));
    hub.publish("s", &progress(101));
    let mut got = Vec::new();
    while let Ok(Some(f)) =
        tokio::time::timeout(std::time::Duration::from_millis(20), c.next()).await
    {
        got.push(f);
    }
    // snapshot, latest of 0..100, ready, latest of 100..102
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(seq_of(&got[1]), Some(99));
    assert!(got[2].text.contains("\"ready\""));
    assert_eq!(seq_of(&got[3]), Some(101));
    assert_eq!(c.coalesced(), 100);
}

#[tokio::test]
async fn a_client_that_keeps_up_gets_every_event_of_a_burst() {
    let hub = Hub::new(QueueLimits::default());
    let c = hub.connect().unwrap();
    hub.join(&c, "s", ready).unwrap();
    for i in 0..50 {
        hub.publish("s", &progress(i));
    }
    c.next().await.unwrap();
    for i in 0..50 {
        assert_eq!(seq_of(&c.next().await.unwrap()), Some(i));
    }
    assert_eq!(c.coalesced(), 0);
}

#[tokio::test]
async fn overflow_closes_the_client_with_a_reason() {
    let hub = Hub::new(QueueLimits {
        max_frames: 8,
        ..Default::default()
    });
    let c = hub.connect().unwrap();
    hub.join(&c, "s", ready).unwrap();
    for _ in 0..20 {
        hub.publish("s", &ready());
    }
    assert!(c.closed().is_cancelled());
    assert!(c.close_reason().unwrap().contains("too slow"));
    assert!(c.next().await.is_none());
}

#[tokio::test]
async fn rooms_are_separate_and_leave_works() {
    let hub = Hub::new(QueueLimits::default());
    let a = hub.connect().unwrap();
    let b = hub.connect().unwrap();
    hub.join(&a, "s", ready).unwrap();
    hub.join(&b, "t", ready).unwrap();
    a.next().await.unwrap();
    b.next().await.unwrap();
    hub.publish("t", &ready());
    assert!(b.next().await.is_some());
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(20), a.next())
            .await
            .is_err()
    );
    assert!(hub.leave(&a, "s"));
    assert!(!hub.leave(&a, "s"));
    assert_eq!(hub.room_size("s"), 0);
    hub.disconnect(&b);
    assert_eq!(hub.room_size("t"), 0);
    assert_eq!(hub.client_count(), 1);
}

#[tokio::test]
async fn clients_past_the_cap_are_refused_until_one_leaves() {
    let hub = Hub::new(QueueLimits::default()).with_max_clients(2);
    let a = hub.connect().unwrap();
    let _b = hub.connect().unwrap();
    assert!(hub.is_full());
    assert_eq!(
        hub.connect().unwrap_err(),
        HubError::TooManyClients { max: 2 }
    );
    hub.disconnect(&a);
    assert!(!hub.is_full());
    assert!(hub.connect().is_ok(), "a freed slot is usable again");
    assert!(hub.connect().is_err());
}

#[tokio::test]
async fn rooms_past_the_cap_are_refused_until_one_is_left() {
    let hub = Hub::new(QueueLimits {
        max_rooms: 2,
        ..Default::default()
    });
    let c = hub.connect().unwrap();
    hub.join(&c, "a", ready).unwrap();
    hub.join(&c, "b", ready).unwrap();
    hub.join(&c, "a", ready)
        .expect("a re-join takes no new slot");
    assert_eq!(
        hub.join(&c, "c", ready).unwrap_err(),
        HubError::TooManyRooms { max: 2 }
    );
    assert_eq!(hub.room_size("c"), 0, "the refused join left no room");
    assert!(!c.is_joined("c"));
    assert!(hub.leave(&c, "a"));
    hub.join(&c, "c", ready).expect("a left room frees a slot");
    assert!(c.is_joined("c"));
}
