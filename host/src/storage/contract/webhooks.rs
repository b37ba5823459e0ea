//! The webhooks' storage contract: behaviour every [`WebhookStore`]
//! adapter must show. Each check uses its own endpoint ids, so the checks
//! share a store (and a server) with each other and with the main suite.

use crate::domain::now_ms;
use crate::storage::webhooks::{
    DeliveryCursor, DeliveryRecord, DeliveryStatus, WebhookRecord, WebhookStore,
};

fn hook(tag: &str) -> WebhookRecord {
    let id = format!("{tag}-{}", uuid::Uuid::new_v4().simple());
    WebhookRecord {
        webhook_id: id,
        url: "https://example.com/hook".into(),
        events: vec!["session_ready".into(), "message_received".into()],
        session_id: None,
        secret: Some("a-secret-of-sixteen+".into()),
        created_at: now_ms(),
    }
}

fn delivery(h: &WebhookRecord, session: &str, event: &str, created_at: i64) -> DeliveryRecord {
    DeliveryRecord {
        webhook_id: h.webhook_id.clone(),
        event_id: event.into(),
        event: "session_ready".into(),
        session_id: session.into(),
        data: serde_json::json!({"sessionId": session, "n": created_at}),
        created_at,
        status: DeliveryStatus::Pending,
        attempts: 0,
        queued_at: created_at,
        next_attempt_at: created_at,
        last_attempt_at: None,
        last_status: None,
        last_error: None,
        finished_at: None,
    }
}

/// Runs every check that holds on any adapter.
pub async fn run_all(store: &dyn WebhookStore) {
    webhooks_round_trip(store).await;
    deliveries_are_queued_once_in_order(store).await;
    deliveries_page_by_status_and_age_out(store).await;
}

/// `DELETE ...?purge=true` removes a session's deliveries, whatever their
/// status (they carry their event's data, message bodies among it), and
/// leaves other sessions' alone.
pub async fn a_purge_deletes_the_sessions_deliveries<S: crate::storage::Store + WebhookStore>(
    store: &S,
) {
    let h = hook("purge");
    store.put_webhook(&h).await.unwrap();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (gone, kept) = (
        format!("gone-{}", &suffix[..8]),
        format!("kept-{}", &suffix[..8]),
    );
    let mut dead = delivery(&h, &gone, "e2", 20);
    dead.status = DeliveryStatus::Dead;
    store
        .insert_deliveries(&[
            delivery(&h, &gone, "e1", 10),
            dead,
            delivery(&h, &kept, "e3", 30),
        ])
        .await
        .unwrap();
    let id = crate::domain::SessionId::parse(&gone).unwrap();
    store.delete_session(&id, true).await.unwrap();
    for e in ["e1", "e2"] {
        assert_eq!(
            store.get_delivery(&h.webhook_id, e).await.unwrap(),
            None,
            "{e}"
        );
    }
    let pending = store
        .pending_deliveries(&h.webhook_id, &[], 10)
        .await
        .unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|d| d.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e3"]
    );
    let dead = store
        .list_deliveries(&h.webhook_id, DeliveryStatus::Dead, 10, None)
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    // Without purge, a session's deliveries stay.
    let id = crate::domain::SessionId::parse(&kept).unwrap();
    store.delete_session(&id, false).await.unwrap();
    assert!(
        store
            .get_delivery(&h.webhook_id, "e3")
            .await
            .unwrap()
            .is_some()
    );
    store.delete_webhook(&h.webhook_id).await.unwrap();
}

/// Endpoints are written, read, listed and deleted with their deliveries.
pub async fn webhooks_round_trip(store: &dyn WebhookStore) {
    let mut h = hook("rt");
    h.session_id = Some("s1".into());
    store.put_webhook(&h).await.unwrap();
    assert_eq!(
        store.get_webhook(&h.webhook_id).await.unwrap(),
        Some(h.clone())
    );
    assert!(store.list_webhooks().await.unwrap().contains(&h));
    let held = store.claim_webhooks("h1", 1_000, 60_000).await.unwrap();
    assert!(held.contains(&h.webhook_id), "a free endpoint is claimed");
    // A claim does not change what the endpoint reads back as.
    assert_eq!(
        store.get_webhook(&h.webhook_id).await.unwrap(),
        Some(h.clone())
    );
    store
        .insert_deliveries(&[delivery(&h, "s1", "e1", 10)])
        .await
        .unwrap();
    assert!(store.delete_webhook(&h.webhook_id).await.unwrap());
    assert!(!store.delete_webhook(&h.webhook_id).await.unwrap());
    assert_eq!(store.get_webhook(&h.webhook_id).await.unwrap(), None);
    assert_eq!(store.get_delivery(&h.webhook_id, "e1").await.unwrap(), None);
    assert!(
        store
            .pending_deliveries(&h.webhook_id, &[], 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Queueing a delivery twice keeps the first; the pending window is in
/// event order across sessions, leaves out skipped sessions and the
/// deliveries that are no longer pending.
pub async fn deliveries_are_queued_once_in_order(store: &dyn WebhookStore) {
    let h = hook("order");
    store.put_webhook(&h).await.unwrap();
    let batch = vec![
        delivery(&h, "s2", "e3", 30),
        delivery(&h, "s1", "e1", 10),
        delivery(&h, "s1", "e2", 20),
        delivery(&h, "s2", "e4", 30),
    ];
    store.insert_deliveries(&batch).await.unwrap();
    let mut first = store
        .get_delivery(&h.webhook_id, "e1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, batch[1]);
    first.status = DeliveryStatus::Delivered;
    first.attempts = 2;
    first.finished_at = Some(11);
    first.last_status = Some(204);
    assert!(store.update_delivery(&first).await.unwrap());
    // The same deliveries again (a relay retrying its batch): no change.
    store.insert_deliveries(&batch).await.unwrap();
    assert_eq!(
        store.get_delivery(&h.webhook_id, "e1").await.unwrap(),
        Some(first.clone())
    );
    let ids = |v: Vec<DeliveryRecord>| v.into_iter().map(|d| d.event_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .pending_deliveries(&h.webhook_id, &[], 10)
            .await
            .unwrap()),
        ["e2", "e3", "e4"]
    );
    assert_eq!(
        ids(store
            .pending_deliveries(&h.webhook_id, &["s2".into()], 10)
            .await
            .unwrap()),
        ["e2"]
    );
    assert_eq!(
        ids(store
            .pending_deliveries(&h.webhook_id, &[], 2)
            .await
            .unwrap()),
        ["e2", "e3"]
    );
    // A retry scheduled keeps its place in the order.
    let mut e2 = store
        .get_delivery(&h.webhook_id, "e2")
        .await
        .unwrap()
        .unwrap();
    e2.attempts = 1;
    e2.next_attempt_at = 99;
    e2.last_error = Some("status 500".into());
    assert!(store.update_delivery(&e2).await.unwrap());
    let window = store
        .pending_deliveries(&h.webhook_id, &[], 10)
        .await
        .unwrap();
    assert_eq!(window[0], e2);
    // A delivery of a deleted endpoint is gone: an update says so.
    let other = hook("gone");
    assert!(
        !store
            .update_delivery(&delivery(&other, "s1", "x", 1))
            .await
            .unwrap()
    );
    store.delete_webhook(&h.webhook_id).await.unwrap();
}

/// Deliveries page by status with a cursor; retention removes delivered
/// and dead ones older than the cut-off, never pending ones.
pub async fn deliveries_page_by_status_and_age_out(store: &dyn WebhookStore) {
    let h = hook("page");
    store.put_webhook(&h).await.unwrap();
    let old = now_ms() - 10 * 86_400_000;
    let mut rows = Vec::new();
    for n in 0..5i64 {
        let mut d = delivery(&h, "s1", &format!("d{n}"), old + n);
        d.status = DeliveryStatus::Dead;
        d.finished_at = Some(old + n);
        rows.push(d);
    }
    let mut delivered = delivery(&h, "s1", "ok", old);
    delivered.status = DeliveryStatus::Delivered;
    rows.push(delivered);
    rows.push(delivery(&h, "s1", "wait", old));
    let fresh = {
        let mut d = delivery(&h, "s1", "fresh", now_ms());
        d.status = DeliveryStatus::Dead;
        d
    };
    rows.push(fresh);
    store.insert_deliveries(&rows).await.unwrap();
    let page1 = store
        .list_deliveries(&h.webhook_id, DeliveryStatus::Dead, 3, None)
        .await
        .unwrap();
    let ids = |v: &[DeliveryRecord]| v.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&page1), ["d0", "d1", "d2"]);
    let cursor = DeliveryCursor::decode(&DeliveryCursor::of(&page1[2]).encode()).unwrap();
    let page2 = store
        .list_deliveries(&h.webhook_id, DeliveryStatus::Dead, 3, Some(&cursor))
        .await
        .unwrap();
    assert_eq!(ids(&page2), ["d3", "d4", "fresh"]);
    let pending = store
        .list_deliveries(&h.webhook_id, DeliveryStatus::Pending, 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&pending), ["wait"]);
    assert!(store.prune_deliveries(now_ms() - 86_400_000).await.unwrap() >= 6);
    let left = |status| store.list_deliveries(&h.webhook_id, status, 10, None);
    assert_eq!(ids(&left(DeliveryStatus::Dead).await.unwrap()), ["fresh"]);
    assert!(left(DeliveryStatus::Delivered).await.unwrap().is_empty());
    assert_eq!(ids(&left(DeliveryStatus::Pending).await.unwrap()), ["wait"]);
    store.delete_webhook(&h.webhook_id).await.unwrap();
}

/// On a store several hosts share, an endpoint claimed by one host is not
/// handed to another until the claim runs out; its holder keeps it.
pub async fn webhook_claims_are_exclusive(store: &dyn WebhookStore) {
    let a = hook("claim");
    store.put_webhook(&a).await.unwrap();
    let h1 = store.claim_webhooks("h1", 1_000, 60_000).await.unwrap();
    assert!(h1.contains(&a.webhook_id));
    let h2 = store.claim_webhooks("h2", 1_000, 60_000).await.unwrap();
    assert!(!h2.contains(&a.webhook_id), "held by h1");
    assert!(
        store
            .claim_webhooks("h1", 0, 60_000)
            .await
            .unwrap()
            .contains(&a.webhook_id),
        "renewed by its holder"
    );
    // A claim that runs out is taken by another host.
    let b = hook("claim");
    store.put_webhook(&b).await.unwrap();
    assert!(
        store
            .claim_webhooks("h3", 1_000, 1)
            .await
            .unwrap()
            .contains(&b.webhook_id)
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(
        store
            .claim_webhooks("h4", 1_000, 60_000)
            .await
            .unwrap()
            .contains(&b.webhook_id)
    );
    store.delete_webhook(&a.webhook_id).await.unwrap();
    store.delete_webhook(&b.webhook_id).await.unwrap();
}
