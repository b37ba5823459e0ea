//! The live-message spool: where a session keeps what arrived while the
//! store was unreachable, until the store takes it.
//!
//! One file per session (`<data>/spool/session-<id>.jsonl`), one JSON record
//! per line, each appended and fsync'd before the write is considered done,
//! so a host crash during an outage loses nothing already received. Records
//! are written after the plugins ran (a redacted body stays redacted on
//! disk). The file is bounded: past [`MAX_RECORDS`] a new record is refused
//! (and counted) rather than letting an outage fill the disk. When the
//! store answers again the session stores the records in order, then
//! deletes the file; storing is idempotent, so a crash between the two only
//! repeats writes.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::{Message, MessageUpdate, OutboxEvent, QuarantinedMessage, SessionId};

/// Records one spool holds at most.
pub const MAX_RECORDS: usize = 10_000;

/// One thing the store did not take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum SpoolRecord {
    Message(Box<Message>),
    Quarantine(Box<QuarantinedMessage>),
    Event(Box<OutboxEvent>),
    /// A change of a message (after the plugins, for an edit).
    Change(Box<MessageUpdate>),
}

/// A session's spool file.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    len: usize,
}

impl Spool {
    /// The spool of `session` under `dir` (its records, if a previous run
    /// left some, are counted).
    pub fn open(dir: &Path, session: &SessionId) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("session-{}.jsonl", session.as_str()));
        let len = match std::fs::read(&path) {
            Ok(bytes) => {
                // A line a crash cut short would swallow the next append:
                // cut the file back to its last complete line.
                let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                if whole < bytes.len() {
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(whole as u64)?;
                }
                bytes[..whole].iter().filter(|b| **b == b'\n').count()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Spool { path, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `records` durably; `Ok(false)` when the spool is full.
    pub fn append(&mut self, records: &[SpoolRecord]) -> std::io::Result<bool> {
        if self.len + records.len() > MAX_RECORDS {
            return Ok(false);
        }
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        self.len += records.len();
        Ok(true)
    }

    /// Every record, oldest first. A line a crash cut short (the last one)
    /// is skipped: its write never completed, so it was never acknowledged.
    pub fn read(&self) -> std::io::Result<Vec<SpoolRecord>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line?;
            match serde_json::from_str(&line) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable spool line"),
            }
        }
        Ok(out)
    }

    /// Empties the spool (its records are stored).
    pub fn clear(&mut self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> Message {
        Message {
            id: format!("m{n}"),
            chat_id: "c@c.us".into(),
            from: "c@c.us".into(),
            to: "me@c.us".into(),
            author: None,
            body: Some(format!("line\n{n}")),
            kind: "chat".into(),
            timestamp: 1_700_000_000_000,
            from_me: false,
            has_media: false,
            ack: 1,
            quoted_id: None,
            tags: vec![],
            attributes: Default::default(),
            changes: Default::default(),
        }
    }

    #[test]
    fn records_survive_a_reopen_in_order_and_clear_empties() {
        let dir = tempfile::tempdir().unwrap();
        let sid = SessionId::parse("s1").unwrap();
        let mut s = Spool::open(dir.path(), &sid).unwrap();
        assert!(s.is_empty());
        let recs = vec![
            SpoolRecord::Message(Box::new(msg(1))),
            SpoolRecord::Message(Box::new(msg(2))),
            SpoolRecord::Change(Box::new(MessageUpdate {
                chat_id: "c@c.us".into(),
                message_id: "m1".into(),
                change: crate::domain::MessageChange::Edit {
                    body: Some("edited\nline".into()),
                    at: 5,
                },
            })),
        ];
        assert!(s.append(&recs).unwrap());
        let s = Spool::open(dir.path(), &sid).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.read().unwrap(), recs);
        let mut s = s;
        s.clear().unwrap();
        assert!(s.read().unwrap().is_empty());
        assert!(Spool::open(dir.path(), &sid).unwrap().is_empty());
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_full_spool_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let sid = SessionId::parse("s2").unwrap();
        let mut s = Spool::open(dir.path(), &sid).unwrap();
        s.append(&[SpoolRecord::Message(Box::new(msg(1)))]).unwrap();
        let path = dir.path().join("session-s2.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"kind\":\"message\",\"val").unwrap();
        assert_eq!(s.read().unwrap().len(), 1);
        // Reopened after the "crash": the torn line is cut, appends go on.
        let mut s = Spool::open(dir.path(), &sid).unwrap();
        assert_eq!(s.len(), 1);
        s.append(&[SpoolRecord::Message(Box::new(msg(2)))]).unwrap();
        assert_eq!(s.read().unwrap().len(), 2);
        s.clear().unwrap();
        let many: Vec<SpoolRecord> = (0..MAX_RECORDS as u32)
            .map(|n| SpoolRecord::Message(Box::new(msg(n))))
            .collect();
        assert!(s.append(&many).unwrap());
        assert!(!s.append(&[SpoolRecord::Message(Box::new(msg(0)))]).unwrap());
        assert_eq!(s.len(), MAX_RECORDS);
    }
}
