//! The contacts part of the storage contract: contacts are idempotent on
//! `(sessionId, contactId)`, paged by id, counted, found by either id of a
//! person, and purged with their session; group members live on the chat
//! and survive a chat upsert.

use super::{chat, sid};
use crate::domain::{Contact, GroupParticipants, Participant};
use crate::storage::Store;

fn contact(n: u32, lid: bool) -> Contact {
    Contact {
        id: format!("4477009{n:05}@c.us"),
        name: Some(format!("Person {n}")),
        pushname: Some(format!("P{n}")),
        number: Some(format!("4477009{n:05}")),
        is_business: n.is_multiple_of(3),
        lid: lid.then(|| format!("{}@lid", 900_000_000 + n)),
    }
}

/// Every check of this part.
pub async fn run_all(store: &dyn Store) {
    contacts_upsert_page_and_resolve(store).await;
    group_members_live_on_the_chat(store).await;
}

pub async fn contacts_upsert_page_and_resolve(store: &dyn Store) {
    let kind = store.kind();
    let s = sid("contacts");
    let other = sid("contacts-other");
    let all: Vec<Contact> = (0..25).map(|n| contact(n, n % 2 == 0)).collect();
    store.upsert_contacts(&s, &all).await.unwrap();
    // Twice is once; another session's contacts are its own.
    store.upsert_contacts(&s, &all).await.unwrap();
    store.upsert_contacts(&other, &all[..3]).await.unwrap();
    assert_eq!(store.count_contacts(&s).await.unwrap(), 25, "{kind}");
    assert_eq!(store.count_contacts(&other).await.unwrap(), 3, "{kind}");

    // Paged by id, ascending, each once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_contacts(&s, 10, after.as_deref()).await.unwrap();
        assert!(page.len() <= 10, "{kind}");
        seen.extend(page.iter().map(|c| c.contact.clone()));
        assert!(page.iter().all(|c| c.session_id == s.as_str()), "{kind}");
        match page.last() {
            Some(last) if page.len() == 10 => after = Some(last.contact.id.clone()),
            _ => break,
        }
    }
    assert_eq!(seen, all, "{kind}: every contact once, by id");
    assert!(store.list_contacts(&s, 0, None).await.unwrap().is_empty());

    // Either id of a person finds the contact.
    let by_number = store.find_contact(&s, &all[4].id).await.unwrap().unwrap();
    let lid = all[4].lid.clone().unwrap();
    let by_lid = store.find_contact(&s, &lid).await.unwrap().unwrap();
    assert_eq!(by_number, by_lid, "{kind}");
    assert_eq!(by_lid.contact, all[4], "{kind}");
    assert!(
        store
            .find_contact(&s, "nobody@c.us")
            .await
            .unwrap()
            .is_none()
    );
    let first_lid = all[0].lid.clone().unwrap();
    let theirs = store
        .find_contact(&other, &first_lid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(theirs.session_id, other.as_str(), "{kind}");
    assert!(
        store.find_contact(&other, &lid).await.unwrap().is_none(),
        "{kind}"
    );

    // An update replaces the fields; a dropped lid no longer resolves.
    let mut changed = all[4].clone();
    changed.name = Some("Renamed".into());
    changed.lid = None;
    store
        .upsert_contacts(&s, std::slice::from_ref(&changed))
        .await
        .unwrap();
    let got = store.find_contact(&s, &changed.id).await.unwrap().unwrap();
    assert_eq!(got.contact, changed, "{kind}");
    assert!(
        store.find_contact(&s, &lid).await.unwrap().is_none(),
        "{kind}"
    );

    // A person first known only by `@lid`, then with their number, is one
    // contact.
    let lid_only = Contact {
        id: "777000111@lid".into(),
        name: None,
        pushname: Some("Lee".into()),
        number: None,
        is_business: false,
        lid: None,
    };
    store.upsert_contacts(&s, &[lid_only]).await.unwrap();
    assert_eq!(store.count_contacts(&s).await.unwrap(), 26, "{kind}");
    let known = Contact {
        id: "447700977777@c.us".into(),
        name: Some("Lee".into()),
        pushname: Some("Lee".into()),
        number: Some("447700977777".into()),
        is_business: false,
        lid: Some("777000111@lid".into()),
    };
    store
        .upsert_contacts(&s, std::slice::from_ref(&known))
        .await
        .unwrap();
    assert_eq!(store.count_contacts(&s).await.unwrap(), 26, "{kind}");
    let got = store
        .find_contact(&s, "777000111@lid")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.contact, known, "{kind}");

    // A purge takes them; a plain delete keeps them.
    store.delete_session(&other, false).await.unwrap();
    assert_eq!(store.count_contacts(&other).await.unwrap(), 3, "{kind}");
    store.delete_session(&s, true).await.unwrap();
    assert_eq!(store.count_contacts(&s).await.unwrap(), 0, "{kind}");
    assert!(store.find_contact(&s, &known.id).await.unwrap().is_none());
    assert_eq!(store.count_contacts(&other).await.unwrap(), 3, "{kind}");
    store.delete_session(&other, true).await.unwrap();
}

pub async fn group_members_live_on_the_chat(store: &dyn Store) {
    let kind = store.kind();
    let s = sid("members");
    let group = chat("120363000000000001@g.us", Some(1_700_000_000_000));
    let private = chat("4477009000001@c.us", Some(1_699_000_000_000));
    store
        .upsert_chats(&s, &[group.clone(), private.clone()])
        .await
        .unwrap();
    let members = vec![
        Participant {
            id: "4477009000001@c.us".into(),
            is_admin: true,
            is_super_admin: true,
        },
        Participant {
            id: "4477009000002@c.us".into(),
            is_admin: false,
            is_super_admin: false,
        },
    ];
    let groups = [
        GroupParticipants {
            chat_id: group.id.clone(),
            participants: members.clone(),
        },
        // A group that is not stored is skipped, not created.
        GroupParticipants {
            chat_id: "120363999999999999@g.us".into(),
            participants: members.clone(),
        },
    ];
    store.put_participants(&s, &groups).await.unwrap();
    store.put_participants(&s, &groups).await.unwrap();
    let got = store.get_chat(&s, &group.id).await.unwrap().unwrap();
    assert_eq!(got.participants, members, "{kind}");
    assert!(
        store
            .get_chat(&s, "120363999999999999@g.us")
            .await
            .unwrap()
            .is_none(),
        "{kind}"
    );
    // A chat upsert (a new name, new activity) keeps them.
    let mut renamed = group.clone();
    renamed.name = Some("Renamed".into());
    renamed.last_message_at = Some(1_700_000_100_000);
    store.upsert_chats(&s, &[renamed]).await.unwrap();
    let page = store.list_chats(&s, 10, None).await.unwrap();
    assert_eq!(page.chats[0].participants, members, "{kind}");
    assert!(page.chats[1].participants.is_empty(), "{kind}");
    let json = serde_json::to_value(&page.chats[0]).unwrap();
    assert_eq!(json["participants"][0]["isSuperAdmin"], true, "{kind}");
    assert!(
        serde_json::to_value(&page.chats[1])
            .unwrap()
            .get("participants")
            .is_none()
    );
    store.delete_session(&s, true).await.unwrap();
}
