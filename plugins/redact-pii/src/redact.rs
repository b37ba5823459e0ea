//! The redaction itself: plain Rust with no dependencies, so the same file
//! compiles into the plugin and, natively, into the host's benchmark (the
//! comparison then measures the sandbox, not two different algorithms).
//!
//! Detection is a hand-written scanner over ASCII bytes rather than a regex
//! engine: it keeps the component small and the per-message cost low, and
//! since every boundary it cuts at is an ASCII byte, slicing never splits a
//! UTF-8 character.

/// What to mask and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub emails: bool,
    pub phones: bool,
    pub email_mask: String,
    pub phone_mask: String,
    /// Fewest digits a number needs to count as a phone number. Numbers that
    /// start with `+` need only 7; shorter runs (years, dates, prices,
    /// order numbers) are left alone.
    pub min_phone_digits: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            emails: true,
            phones: true,
            email_mask: "[email]".to_owned(),
            phone_mask: "[phone]".to_owned(),
            min_phone_digits: 9,
        }
    }
}

/// How many spans were masked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub emails: u32,
    pub phones: u32,
}

impl Counts {
    pub fn total(self) -> u32 {
        self.emails + self.phones
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Phone,
}

/// Returns the masked text, or `None` when there was nothing to mask (the
/// common case, which then costs one pass over the bytes and no
/// allocation).
pub fn redact(text: &str, opts: &Options) -> Option<(String, Counts)> {
    let b = text.as_bytes();
    // Most bodies have no `@` and too few digits for a phone number; one
    // pass that finds out spares them both scans.
    let (has_at, digits) = survey(b);
    let emails = opts.emails && has_at;
    // A number needs 7 digits after `+`, `min_phone_digits` otherwise, and
    // at least one to start at all.
    let phones = opts.phones && digits > 0 && digits >= opts.min_phone_digits.min(7);
    if !emails && !phones {
        return None;
    }
    let mut spans: Vec<(usize, usize, Kind)> = Vec::new();
    if emails {
        email_spans(b, &mut spans);
    }
    let found_emails = !spans.is_empty();
    if phones {
        phone_spans(b, opts.min_phone_digits, &mut spans);
    }
    if spans.is_empty() {
        return None;
    }
    // Each scan's spans come in order; only a mix needs sorting.
    if found_emails && phones {
        spans.sort_unstable_by_key(|s| s.0);
    }
    let mut out = String::with_capacity(text.len());
    let mut counts = Counts::default();
    let mut at = 0;
    for (start, end, kind) in spans {
        if start < at {
            continue; // overlaps a span already masked
        }
        out.push_str(&text[at..start]);
        match kind {
            Kind::Email => {
                out.push_str(&opts.email_mask);
                counts.emails += 1;
            }
            Kind::Phone => {
                out.push_str(&opts.phone_mask);
                counts.phones += 1;
            }
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Some((out, counts))
}

/// Whether `b` has an `@`, and how many ASCII digits: branch-free, with
/// per-chunk counters one byte wide, so the compiler vectorizes it 16 or
/// 32 bytes a step (a `usize` counter and a `bool` it does not).
fn survey(b: &[u8]) -> (bool, usize) {
    let mut at = 0u8;
    let mut digits = 0;
    for chunk in b.chunks(255) {
        let mut d = 0u8;
        for &c in chunk {
            at |= u8::from(c == b'@');
            d += u8::from(c.wrapping_sub(b'0') < 10);
        }
        digits += usize::from(d);
    }
    (at != 0, digits)
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

/// `local@domain.tld` with a top-level domain of at least two letters.
fn email_spans(b: &[u8], spans: &mut Vec<(usize, usize, Kind)>) {
    let mut floor = 0; // the previous span's end: spans never overlap
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'@' {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > floor && is_local(b[start - 1]) {
            start -= 1;
        }
        while start < i && b[start] == b'.' {
            start += 1;
        }
        let mut end = i + 1;
        while end < b.len() && is_domain(b[end]) {
            end += 1;
        }
        while end > i + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &b[i + 1..end];
        let tld_ok = domain
            .iter()
            .rposition(|&c| c == b'.')
            .filter(|&dot| dot > 0)
            .map(|dot| &domain[dot + 1..])
            .is_some_and(|tld| tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic));
        if start < i && tld_ok {
            spans.push((start, end, Kind::Email));
            floor = end;
            i = end;
        } else {
            i += 1;
        }
    }
}

/// Digit runs with the usual separators (`+`, spaces, `-`, `.`, `(`, `)`),
/// not glued to letters or other digits on either side.
fn phone_spans(b: &[u8], min_digits: usize, spans: &mut Vec<(usize, usize, Kind)>) {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = c.is_ascii_digit()
            || ((c == b'+' || c == b'(') && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        // Looked at only where a number could start: most bytes cannot.
        if !starts || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'@')) {
            i += 1;
            continue;
        }
        let plus = c == b'+';
        let mut j = if c.is_ascii_digit() { i } else { i + 1 };
        let mut digits = 0;
        let mut last_digit_end = j;
        let mut seps = 0;
        while j < b.len() {
            let d = b[j];
            if d.is_ascii_digit() {
                digits += 1;
                seps = 0;
                last_digit_end = j + 1;
            } else if matches!(d, b' ' | b'-' | b'.' | b'(' | b')') {
                seps += 1;
                if seps > 2 {
                    break;
                }
            } else {
                break;
            }
            j += 1;
        }
        let after_ok = b
            .get(last_digit_end)
            .is_none_or(|&n| !n.is_ascii_alphanumeric() && n != b'@');
        let enough = if plus {
            digits >= 7
        } else {
            digits >= min_digits
        };
        if enough && digits <= 15 && after_ok {
            spans.push((i, last_digit_end, Kind::Phone));
        }
        i = last_digit_end.max(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact(s, &Options::default()).map_or_else(|| s.to_owned(), |(t, _)| t)
    }

    #[test]
    fn masks_emails_and_phones() {
        assert_eq!(r("mail ana.b+x@example.co.uk now"), "mail [email] now");
        assert_eq!(r("call +49 151 2345 6789."), "call [phone].");
        assert_eq!(
            r("call (030) 1234-5678 or 0151.23456789"),
            "call [phone] or [phone]"
        );
        assert_eq!(r("both a@b.io, +1-202-555-0143"), "both [email], [phone]");
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for s in [
            "meet at 10:30 on 2024-01-15",
            "order 12345 costs 99.90",
            "user@localhost is not an address",
            "@handle and trailing@",
            "version 1.2.3",
            "ünïcödé 👋 text",
            "abc123456789",
            "",
        ] {
            assert_eq!(redact(s, &Options::default()), None, "{s:?}");
        }
    }

    #[test]
    fn keeps_unicode_around_masks() {
        assert_eq!(r("tél: +33 6 12 34 56 78 — merci"), "tél: [phone] — merci");
        assert_eq!(r("✉ jo@exämple.com"), "✉ jo@exämple.com");
    }

    #[test]
    fn counts_and_switches() {
        let opts = Options {
            phones: false,
            email_mask: "***".into(),
            ..Options::default()
        };
        let (t, c) = redact("x@y.com +49 151 23456789", &opts).unwrap();
        assert_eq!(t, "*** +49 151 23456789");
        assert_eq!(
            c,
            Counts {
                emails: 1,
                phones: 0
            }
        );
    }
}
