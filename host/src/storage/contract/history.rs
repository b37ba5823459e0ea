//! The oldest stored message of a chat, where a deepen goes on.

use super::{chat, msg, run_for, sid};
use crate::domain::now_ms;
use crate::storage::{ChatCommit, Store};

/// A chat's oldest mark is its oldest stored timestamp with every id
/// stored at it (a burst of more than one read included); a chat whose id
/// extends another's, other sessions and empty chats do not leak in; the
/// adapter's answer equals the listing's, and older messages move it.
pub async fn oldest_marks_are_the_oldest_stored_messages(store: &dyn Store) {
    let s = sid("oldest");
    let other = sid("oldest-other");
    let (a, longer, b, empty) = ("a@c.us", "a@c.usx", "b@g.us", "e@c.us");
    let mut burst: Vec<_> = (0..45).map(|n| msg(b, n)).collect();
    // The 40 oldest messages of `b` share one second.
    for (i, m) in burst.iter_mut().enumerate().take(40) {
        m.timestamp = 1_699_999_000_000;
        m.id = format!("{b}-burst{i:02}");
    }
    let commits = vec![
        ChatCommit {
            chat_id: a.into(),
            messages: (5..10).map(|n| msg(a, n)).collect(),
            synced_at: now_ms(),
            ..Default::default()
        },
        ChatCommit {
            chat_id: b.into(),
            messages: burst.into(),
            synced_at: now_ms(),
            ..Default::default()
        },
    ];
    let chats = [a, longer, b, empty].map(|c| chat(c, None));
    store.upsert_chats(&s, &chats).await.unwrap();
    store
        .commit_chats(&s, &commits, &run_for(&s))
        .await
        .unwrap();
    store
        .put_messages(&s, &[msg(longer, 1), msg(longer, 2)])
        .await
        .unwrap();
    store.put_messages(&other, &[msg(a, 0)]).await.unwrap();

    let kind = store.kind();
    let oldest_a = store
        .oldest_mark(&s, a)
        .await
        .unwrap()
        .expect("a has messages");
    assert_eq!(oldest_a.timestamp, msg(a, 5).timestamp, "{kind}");
    assert_eq!(oldest_a.ids, vec![msg(a, 5).id], "{kind}");
    assert!(oldest_a.is_older(&msg(a, 4)) && !oldest_a.is_older(&msg(a, 5)));
    let oldest_b = store.oldest_mark(&s, b).await.unwrap().expect("b");
    assert_eq!(oldest_b.timestamp, 1_699_999_000_000, "{kind}");
    let mut want: Vec<String> = (0..40).map(|i| format!("{b}-burst{i:02}")).collect();
    want.sort();
    assert_eq!(oldest_b.ids, want, "{kind}: the whole burst");
    assert_eq!(
        store.oldest_mark(&s, longer).await.unwrap().map(|m| m.ids),
        Some(vec![msg(longer, 1).id]),
        "{kind}"
    );
    assert_eq!(store.oldest_mark(&s, empty).await.unwrap(), None, "{kind}");
    for id in [a, longer, b, empty] {
        let listed = crate::storage::oldest_from_listing(store, &s, id)
            .await
            .unwrap();
        assert_eq!(
            listed,
            store.oldest_mark(&s, id).await.unwrap(),
            "{kind}: {id}"
        );
    }
    // An older message moves it.
    store.put_messages(&s, &[msg(a, 2)]).await.unwrap();
    let moved = store.oldest_mark(&s, a).await.unwrap().unwrap();
    assert_eq!(moved.ids, vec![msg(a, 2).id], "{kind}");
}
