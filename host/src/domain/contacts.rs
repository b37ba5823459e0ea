//! Contacts and group participants, as WhatsApp Web knows them.
//!
//! WhatsApp gives a person two ids: the phone-number id (`<number>@c.us`)
//! and, on newer accounts, a *linked id* (`<digits>@lid`) that hides the
//! number; group messages may name their author by either. A [`Contact`]
//! is keyed by its phone-number id when WhatsApp Web knows the number
//! (its `lid` beside it), else by the `@lid` id itself, so both ids of
//! one person lead to one contact.

use serde::{Deserialize, Serialize};

/// One contact of an account, as the provider reports it and as it is
/// stored (unique per `(sessionId, id)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// The contact's id: `<number>@c.us` when the number is known, else
    /// `<digits>@lid`.
    pub id: String,
    /// The name saved in the phone's address book.
    pub name: Option<String>,
    /// The name the person set for themselves.
    pub pushname: Option<String>,
    /// The phone number, digits only, when known.
    pub number: Option<String>,
    pub is_business: bool,
    /// The person's linked id (`<digits>@lid`), when WhatsApp Web maps it
    /// to the phone-number id.
    pub lid: Option<String>,
}

impl Contact {
    /// Whether `id` names this contact (its id or its `@lid`).
    pub fn answers_to(&self, id: &str) -> bool {
        self.id == id || self.lid.as_deref() == Some(id)
    }
}

/// A stored contact: the contact plus its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoredContact {
    pub session_id: String,
    #[serde(flatten)]
    pub contact: Contact,
}

/// A member of a group chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// The member's id, as the group lists it (`@c.us` or `@lid`).
    pub id: String,
    pub is_admin: bool,
    /// The group's creator (also an admin).
    pub is_super_admin: bool,
}

/// The members of one group chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupParticipants {
    pub chat_id: String,
    pub participants: Vec<Participant>,
}

/// What the contacts phase of a sync reads in one call: every contact and
/// the members of every group chat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressBook {
    pub contacts: Vec<Contact>,
    pub groups: Vec<GroupParticipants>,
}

impl AddressBook {
    /// One contact per person, ordered by id, so a write is the same
    /// whatever order the provider listed them in: one per id (the last
    /// one reported wins), and none under an `@lid` that another contact
    /// maps to its number.
    pub fn normalise(&mut self) {
        let mut by_id = std::collections::BTreeMap::new();
        for c in self.contacts.drain(..) {
            by_id.insert(c.id.clone(), c);
        }
        let mapped: std::collections::HashSet<String> = by_id
            .values()
            .filter_map(|c| c.lid.clone().filter(|l| *l != c.id))
            .collect();
        self.contacts = by_id
            .into_values()
            .filter(|c| !mapped.contains(&c.id))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, lid: Option<&str>) -> Contact {
        Contact {
            id: id.into(),
            name: None,
            pushname: None,
            number: None,
            is_business: false,
            lid: lid.map(str::to_owned),
        }
    }

    #[test]
    fn a_book_has_one_contact_per_person() {
        let mut book = AddressBook {
            contacts: vec![
                c("9@lid", None),
                c("2@c.us", None),
                c("1@c.us", Some("9@lid")),
                c("2@c.us", Some("8@lid")),
            ],
            groups: vec![],
        };
        book.normalise();
        assert_eq!(
            book.contacts,
            vec![c("1@c.us", Some("9@lid")), c("2@c.us", Some("8@lid"))]
        );
        assert!(book.contacts[0].answers_to("9@lid"));
        assert!(!book.contacts[0].answers_to("8@lid"));
    }
}
