//! What a manual run asks for, and the checks on it: a sync of every (or
//! some) chat, or the deeper history of one chat.

use crate::domain::{MAX_AGE_DAYS, MAX_HISTORY_LIMIT, SyncMode};

use super::{LIMIT_PER_CHAT, SessionError};

/// A manual run: `POST .../sync-chats`, or `POST .../chats/:chatId/sync`
/// (`mode: history`, `chat_ids` the one chat, `limit_per_chat` the depth
/// the chat is to have, up to [`MAX_HISTORY_LIMIT`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncRequest {
    /// Default full.
    pub mode: Option<SyncMode>,
    /// Default [`super::DEFAULT_LIMIT_PER_CHAT`].
    pub limit_per_chat: Option<u32>,
    pub chat_ids: Option<Vec<String>>,
    /// History runs: read older than this (ms) instead of older than the
    /// chat's oldest stored message.
    pub before: Option<i64>,
    /// Neither read nor store messages older than this many days.
    pub max_age_days: Option<u32>,
}

impl SyncRequest {
    /// Refuses values out of bounds, naming the field.
    pub fn check(&self) -> Result<(), SessionError> {
        let history = self.mode == Some(SyncMode::History);
        let (name, limits) = if history {
            ("limit", 1..=MAX_HISTORY_LIMIT)
        } else {
            ("limitPerChat", LIMIT_PER_CHAT)
        };
        if let Some(l) = self.limit_per_chat
            && !limits.contains(&l)
        {
            return Err(SessionError::BadRequest(format!(
                "{name} must be between {} and {}, got {l}",
                limits.start(),
                limits.end()
            )));
        }
        if history && self.chat_ids.as_ref().is_none_or(|c| c.len() != 1) {
            return Err(SessionError::BadRequest(
                "a history run reads exactly one chat".into(),
            ));
        }
        if let Some(b) = self.before
            && (!history || b <= 0)
        {
            return Err(SessionError::BadRequest(format!(
                "before must be a positive time in ms, got {b}"
            )));
        }
        check_max_age(self.max_age_days)
    }
}

/// `maxAgeDays`, where it is given, within [`MAX_AGE_DAYS`].
pub(super) fn check_max_age(days: Option<u32>) -> Result<(), SessionError> {
    match days {
        Some(d) if !MAX_AGE_DAYS.contains(&d) => Err(SessionError::BadRequest(format!(
            "maxAgeDays must be between {} and {}, got {d}",
            MAX_AGE_DAYS.start(),
            MAX_AGE_DAYS.end()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_by_mode() {
        let history = |limit, before, days| SyncRequest {
            mode: Some(SyncMode::History),
            limit_per_chat: Some(limit),
            chat_ids: Some(vec!["a@c.us".into()]),
            before,
            max_age_days: days,
        };
        assert!(history(3_000, None, None).check().is_ok());
        assert!(
            history(MAX_HISTORY_LIMIT, Some(1), Some(36_500))
                .check()
                .is_ok()
        );
        for bad in [
            history(0, None, None),
            history(MAX_HISTORY_LIMIT + 1, None, None),
            history(10, Some(0), None),
            history(10, Some(-5), None),
            history(10, None, Some(0)),
            history(10, None, Some(36_501)),
            SyncRequest {
                chat_ids: None,
                ..history(10, None, None)
            },
            SyncRequest {
                limit_per_chat: Some(20_000),
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        let sync = SyncRequest {
            limit_per_chat: Some(10_000),
            max_age_days: Some(30),
            ..Default::default()
        };
        assert!(sync.check().is_ok());
    }
}
