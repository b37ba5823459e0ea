//! Deeper history of a simulated chat: the messages older than a mark,
//! found by arithmetic on their indexes (timestamps grow with the index),
//! so a deepen of a million-message chat generates only what it returns.

use super::account::{Account, BASE_MS};
use crate::browser::HistoryRequest;
use crate::domain::Message;

/// The simulated account's clock: it lives at 2025-01-01T00:00:00Z, the
/// time of its newest seeded message, whatever the wall clock says, so
/// `maxAgeDays` keeps the same messages in every test run.
pub const CLOCK_MS: i64 = BASE_MS;

impl Account {
    /// Up to `req.limit` messages of chat `index` older than `req.before`,
    /// the newest of them, oldest first; none older than `req.not_before`.
    pub fn older(&self, index: u32, req: &HistoryRequest) -> Vec<Message> {
        let chat = self.chat(index);
        let n = self.cfg.total_in(index);
        // How many messages are at or before the mark's time: a binary
        // search over the indexes, timestamps being strictly increasing.
        let (mut lo, mut hi) = (0u32, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.timestamp(index, mid) <= req.before.timestamp {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut out = Vec::new();
        for k in (0..lo).rev() {
            if out.len() as u32 >= req.limit {
                break;
            }
            let m = self.message(index, &chat, k);
            if req.not_before.is_some_and(|t| m.timestamp < t) {
                break;
            }
            if req.before.is_older(&m) {
                out.push(m);
            }
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::simulator::{PerChat, SimulatorConfig};
    use crate::domain::MessageMark;

    fn account(per_chat: u32) -> Account {
        Account::new(SimulatorConfig {
            chats: 2,
            messages_per_chat: PerChat::All(per_chat),
            ..Default::default()
        })
    }

    #[test]
    fn older_continues_where_the_newest_end() {
        let a = account(5_000);
        let newest = a.newest(1, 100);
        let oldest = &newest[0];
        let mark = MessageMark {
            timestamp: oldest.timestamp,
            ids: vec![oldest.id.clone()],
        };
        let req = HistoryRequest {
            limit: 2_900,
            before: mark,
            not_before: None,
        };
        let older = a.older(1, &req);
        assert_eq!(older.len(), 2_900);
        let mut all = older.clone();
        all.extend(newest);
        assert_eq!(all, a.newest(1, 3_000), "the same messages, in order");
    }

    #[test]
    fn older_stops_at_the_start_and_at_not_before() {
        let a = account(50);
        let all = a.newest(0, 50);
        let req = |before: MessageMark, not_before| HistoryRequest {
            limit: 1_000,
            before,
            not_before,
        };
        let from_start = a.older(0, &req(MessageMark::before(all[10].timestamp), None));
        assert_eq!(from_start, all[..10].to_vec());
        // A `before` between two messages, and a cutoff at message 4.
        let cut = a.older(
            0,
            &req(
                MessageMark::before(all[10].timestamp - 1),
                Some(all[4].timestamp),
            ),
        );
        assert_eq!(cut, all[4..10].to_vec());
        assert!(
            a.older(0, &req(MessageMark::before(all[0].timestamp), None))
                .is_empty()
        );
    }
}
