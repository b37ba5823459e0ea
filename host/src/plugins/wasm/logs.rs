//! What a plugin writes to the host's log: `host.log` lines and its
//! stdout/stderr, escaped and charged against one budget per call.
//!
//! Why it is written the way it is:
//! - **Every line costs at least [`LINE_OVERHEAD`] bytes.** Charging only a
//!   line's text let empty lines through for free (400,000 of them from four
//!   calls wrote 66 MiB of host log); what a line costs the host is its
//!   prefix (time, level, target, plugin tag) as much as its text.
//! - **A call may write at most [`LINES_PER_CALL`] lines** as well as
//!   [`BYTES_PER_CALL`] bytes, so many tiny lines are capped as hard as a
//!   few long ones. The rest is counted (`logsDropped`), never written.
//! - **stdout and stderr share the budget.** They are held in memory during
//!   the call (at most [`BYTES_PER_CALL`] each; writes past that succeed and
//!   are counted as dropped, so `println!` never panics) and written line by
//!   line after it.
//! - **Control characters are escaped** in everything a plugin writes (and
//!   in the failure reasons the host logs for it): a `\n` in a message would
//!   otherwise start a line without the plugin's tag that reads like the
//!   host's own.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Longest line written; longer ones are cut.
pub(crate) const LINE_BYTES: usize = 1024;
/// Log bytes one call may write (text plus [`LINE_OVERHEAD`] per line).
pub(crate) const BYTES_PER_CALL: usize = 64 * 1024;
/// Log lines one call may write.
pub(crate) const LINES_PER_CALL: u32 = 256;
/// What each line costs on top of its text: the prefix the host writes.
pub(crate) const LINE_OVERHEAD: usize = 64;

/// What is left of one call's log allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogBudget {
    bytes: usize,
    lines: u32,
    /// Lines refused during this call.
    pub dropped: u64,
}

impl LogBudget {
    pub fn fresh() -> Self {
        Self {
            bytes: BYTES_PER_CALL,
            lines: LINES_PER_CALL,
            dropped: 0,
        }
    }

    /// Charges a line of `len` bytes; false (and counted) when it does not
    /// fit.
    pub fn charge(&mut self, len: usize) -> bool {
        let cost = len + LINE_OVERHEAD;
        if self.lines == 0 || cost > self.bytes {
            self.dropped += 1;
            return false;
        }
        self.lines -= 1;
        self.bytes -= cost;
        true
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Line and paragraph separators end a line in some viewers; the
        // bidirectional overrides reorder what a reader sees.
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with control characters (and Unicode line separators and bidi
/// overrides) written as escapes: `\n`, `\r`, `\t`, `\u{1b}`.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The longest prefix of `s` of at most `max` bytes, on a char boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    &s[..at]
}

/// A line as the host writes it: cut, escaped, cut again (escapes are
/// longer than what they stand for).
pub(crate) fn clean(s: &str, max: usize) -> String {
    cut(&escape(cut(s, max)), max).to_owned()
}

/// A guest's stdout or stderr: held in memory until the call ends, up to
/// [`BYTES_PER_CALL`]; writes past that succeed and count as dropped lines.
#[derive(Clone, Default)]
pub(crate) struct StdioSink {
    held: Arc<Mutex<Held>>,
}

#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    /// Newlines in what did not fit.
    overflow_lines: u64,
    overflowed: bool,
}

impl StdioSink {
    fn push(&self, bytes: &[u8]) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let room = BYTES_PER_CALL.saturating_sub(h.bytes.len());
        let (keep, rest) = bytes.split_at(bytes.len().min(room));
        h.bytes.extend_from_slice(keep);
        if !rest.is_empty() {
            h.overflowed = true;
            h.overflow_lines += rest.iter().filter(|b| **b == b'\n').count() as u64;
        }
    }

    /// What the guest wrote since the last call, and how many lines of it
    /// did not fit.
    pub fn take(&self) -> (Vec<u8>, u64) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = h.overflow_lines.max(u64::from(h.overflowed));
        let bytes = std::mem::take(&mut h.bytes);
        *h = Held::default();
        (bytes, dropped)
    }
}

#[async_trait::async_trait]
impl OutputStream for StdioSink {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(BYTES_PER_CALL)
    }
}

#[async_trait::async_trait]
impl Pollable for StdioSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StdioSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for StdioSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_tiny_lines_are_charged_and_capped() {
        let mut b = LogBudget::fresh();
        let written = (0..400_000).filter(|_| b.charge(0)).count();
        assert_eq!(written, LINES_PER_CALL as usize);
        assert_eq!(b.dropped, 400_000 - u64::from(LINES_PER_CALL));

        // Long lines run out of bytes first.
        let mut b = LogBudget::fresh();
        let written = (0..1000).filter(|_| b.charge(LINE_BYTES)).count();
        assert_eq!(written, BYTES_PER_CALL / (LINE_BYTES + LINE_OVERHEAD));
    }

    #[test]
    fn control_characters_cannot_start_a_forged_line() {
        let forged = "ok\n2026-01-01T00:00:00Z ERROR wasync::sync: forged\r\x1b[31m\u{2028}x";
        let out = clean(forged, LINE_BYTES);
        assert!(!out.chars().any(needs_escape), "{out:?}");
        assert_eq!(
            out,
            "ok\\n2026-01-01T00:00:00Z ERROR wasync::sync: forged\\r\\u{1b}[31m\\u{2028}x"
        );
        assert!(matches!(escape("plain text, ünïcode"), Cow::Borrowed(_)));
        // Escaping never makes a line longer than the cap, nor splits a char.
        let out = clean(&"\u{1}é".repeat(1000), LINE_BYTES);
        assert!(out.len() <= LINE_BYTES);
    }

    #[test]
    fn stdio_keeps_a_calls_worth_and_counts_the_rest() {
        let mut s = StdioSink::default();
        s.write(Bytes::from_static(b"hello\n")).unwrap();
        for _ in 0..100_000 {
            s.write(Bytes::from_static(b"a\n")).unwrap();
        }
        let (held, dropped) = s.take();
        assert_eq!(held.len(), BYTES_PER_CALL);
        assert!(held.starts_with(b"hello\n"));
        assert_eq!(dropped, 100_000 - (BYTES_PER_CALL as u64 - 6) / 2);
        assert_eq!(s.take(), (Vec::new(), 0));
    }
}
