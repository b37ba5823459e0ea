//! The simulated account's address book: a pure function of the seed, like
//! its chats and messages.
//!
//! - Every private chat's person is a contact (id = the chat id, name = the
//!   chat's name); every third of them also has a linked id (`@lid`).
//! - `contacts` more people (default 12, `+44 7700 900xxx`, numbers kept
//!   for fiction) fill the groups; every other one has a `@lid`, and a
//!   group message from such a member names its author by the `@lid` or by
//!   the phone-number id (half each), as WhatsApp Web does during its
//!   move to linked ids. Both lead to the one contact.
//! - A group's members are the account itself and 3 to 6 consecutive
//!   people of that pool: the first is the group's creator (super admin),
//!   the second an admin.

use super::Account;
use super::account::{NAMES, h};
use crate::domain::{AddressBook, Contact, GroupParticipants, Participant};

/// Digits of a pool member's linked id.
fn lid_of(seed: u64, salt: u64, j: u64) -> String {
    format!(
        "{}@lid",
        100_000_000_000_000 + h(seed, salt, j) % 100_000_000_000_000
    )
}

impl Account {
    /// Pool member `j` (0-based) of the address book.
    pub fn pool_member(&self, j: u32) -> Contact {
        let seed = self.cfg.seed;
        let r = h(seed, 12, j as u64);
        let number = format!("447700900{j:03}");
        let first = NAMES[(r >> 8) as usize % NAMES.len()];
        Contact {
            id: format!("{number}@c.us"),
            name: Some(format!("{first} {}", j + 1)),
            pushname: Some(first.to_owned()),
            number: Some(number),
            is_business: r.is_multiple_of(5),
            lid: j.is_multiple_of(2).then(|| lid_of(seed, 13, j as u64)),
        }
    }

    /// The contact of private chat `index` (`None` for a group).
    fn chat_contact(&self, index: u32) -> Option<Contact> {
        let chat = self.chat(index);
        if chat.is_group {
            return None;
        }
        let r = h(self.cfg.seed, 14, index as u64);
        let number = chat.id.trim_end_matches("@c.us").to_owned();
        let name = chat.name.clone().unwrap_or_default();
        Some(Contact {
            pushname: name.split(' ').next().map(str::to_owned),
            name: Some(name),
            id: chat.id,
            number: Some(number),
            is_business: r.is_multiple_of(4),
            lid: index
                .is_multiple_of(3)
                .then(|| lid_of(self.cfg.seed, 15, index as u64)),
        })
    }

    /// Pool indices of the members of group chat `index` (the account
    /// itself not included); empty for an empty pool.
    pub(super) fn group_members(&self, index: u32) -> Vec<u32> {
        let pool = self.cfg.contacts;
        if pool == 0 {
            return Vec::new();
        }
        let r = h(self.cfg.seed, 16, index as u64);
        let n = (3 + (r % 4) as u32).min(pool);
        let start = ((r >> 8) % pool as u64) as u32;
        (0..n).map(|k| (start + k) % pool).collect()
    }

    /// The author of a group message whose hash is `r`: a member of group
    /// `index`, by its `@lid` or its phone-number id. `None` without a pool.
    pub(super) fn group_author(&self, index: u32, r: u64) -> Option<String> {
        let members = self.group_members(index);
        if members.is_empty() {
            return None;
        }
        let member = self.pool_member(members[(h(r, 9, 9) % members.len() as u64) as usize]);
        match member.lid {
            Some(lid) if (r >> 5).is_multiple_of(2) => Some(lid),
            _ => Some(member.id),
        }
    }

    /// Members of group chat `index`, as WhatsApp Web lists them.
    pub fn participants(&self, index: u32) -> Vec<Participant> {
        let mut out = vec![Participant {
            id: self.me.clone(),
            is_admin: false,
            is_super_admin: false,
        }];
        for (k, j) in self.group_members(index).into_iter().enumerate() {
            out.push(Participant {
                id: self.pool_member(j).id,
                is_admin: k < 2,
                is_super_admin: k == 0,
            });
        }
        out
    }

    /// Every contact and every group's members.
    pub fn address_book(&self) -> AddressBook {
        let mut contacts: Vec<Contact> = (0..self.cfg.chats)
            .filter_map(|i| self.chat_contact(i))
            .collect();
        contacts.extend((0..self.cfg.contacts).map(|j| self.pool_member(j)));
        let groups = (0..self.cfg.chats)
            .filter(|i| self.chat(*i).is_group)
            .map(|i| GroupParticipants {
                chat_id: self.chat(i).id,
                participants: self.participants(i),
            })
            .collect();
        AddressBook { contacts, groups }
    }

    /// Contacts a sync stores: the private chats' people and the pool.
    pub fn expected_contacts(&self) -> u64 {
        let private = (0..self.cfg.chats)
            .filter(|i| !self.chat(*i).is_group)
            .count() as u64;
        private + u64::from(self.cfg.contacts)
    }
}
