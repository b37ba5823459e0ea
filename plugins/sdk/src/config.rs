//! The `[config]` table of the plugin's manifest, typed.
//!
//! The host hands every value over as text: strings as written, numbers and
//! booleans in their TOML spelling (`200`, `true`), arrays one item per line.
//! A key that is not in the table reads as `None`, so defaults live in the
//! plugin. A value that does not parse is a [`BAD_CONFIG`] error naming the
//! key and the value; returned from a call, the host applies `on_error`.
//!
//! Read config once per instance (the host makes one per chat), e.g. in a
//! [`PerInstance`](crate::PerInstance).
//!
//! ```
//! use wasync_plugin::{PluginError, config};
//!
//! struct Settings { tag: String, words: Vec<String>, max: u32, strict: bool }
//!
//! fn read() -> Result<Settings, PluginError> {
//!     Ok(Settings {
//!         tag: config::string_or("tag", "hit"),
//!         words: config::list("words"),
//!         max: config::parse_or("max", 100)?,
//!         strict: config::parse_or("strict", false)?,
//!     })
//! }
//! # let s = wasync_plugin::testing::with_config(&[("words", "a\n b\n\n"), ("max", " 7 ")], read).unwrap();
//! # assert_eq!((s.tag.as_str(), s.words, s.max, s.strict), ("hit", vec!["a".to_owned(), "b".to_owned()], 7, false));
//! ```

use crate::{BAD_CONFIG, PluginError};

/// The value of `key` as the host gives it, or `None` when it is not set.
#[inline]
pub fn get(key: &str) -> Option<String> {
    crate::host::config_get(key)
}

/// The value of `key`, or `default` when it is not set.
#[inline]
pub fn string_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// The items of a list: one per line (a TOML array arrives one item per
/// line), trimmed, blank lines left out. Empty when `key` is not set.
#[inline]
pub fn list(key: &str) -> Vec<String> {
    get(key)
        .map(|v| {
            v.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `key` parsed as `T` (surrounding spaces ignored), `None`
/// when it is not set, a [`BAD_CONFIG`] error such as
/// ``max-messages must be a whole number, got "lots"`` when it does not parse.
pub fn parse<T: Value>(key: &str) -> Result<Option<T>, PluginError> {
    let Some(raw) = get(key) else {
        return Ok(None);
    };
    match T::from_config(raw.trim()) {
        Some(v) => Ok(Some(v)),
        None => Err(PluginError::new(
            BAD_CONFIG,
            format!("{key} must be {}, got {raw:?}", T::EXPECTED),
        )),
    }
}

/// Like [`parse`], with `default` when `key` is not set.
pub fn parse_or<T: Value>(key: &str, default: T) -> Result<T, PluginError> {
    Ok(parse(key)?.unwrap_or(default))
}

/// A type a config value can be parsed as, with [`parse`]: the integers,
/// `f32`/`f64` and `bool` (`true` or `false`). Implement it for your own
/// types (an enum of modes, say) to get the same errors.
pub trait Value: Sized {
    /// What a good value looks like, for the error: "a whole number".
    const EXPECTED: &'static str;
    /// The value, or `None` when `text` (already trimmed) is not one.
    fn from_config(text: &str) -> Option<Self>;
}

macro_rules! value_from_str {
    ($expected:literal: $($t:ty),*) => {$(
        impl Value for $t {
            const EXPECTED: &'static str = $expected;
            fn from_config(text: &str) -> Option<Self> {
                text.parse().ok()
            }
        }
    )*};
}

value_from_str!("a whole number": u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
value_from_str!("a number": f32, f64);

impl Value for bool {
    const EXPECTED: &'static str = "true or false";
    fn from_config(text: &str) -> Option<Self> {
        match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::with_config;

    #[test]
    fn strings_and_defaults() {
        with_config(&[("a", "x"), ("empty", "")], || {
            assert_eq!(get("a").as_deref(), Some("x"));
            assert_eq!(get("missing"), None);
            assert_eq!(string_or("a", "d"), "x");
            assert_eq!(string_or("missing", "d"), "d");
            assert_eq!(string_or("empty", "d"), "", "set but empty is not missing");
        });
    }

    #[test]
    fn lists_are_lines() {
        with_config(
            &[("l", "one\n  two  \n\n three"), ("single", "solo")],
            || {
                assert_eq!(list("l"), ["one", "two", "three"]);
                assert_eq!(list("single"), ["solo"]);
                assert!(list("missing").is_empty());
            },
        );
    }

    #[test]
    fn numbers_and_bools_parse_or_name_the_key() {
        with_config(
            &[
                ("n", " 42 "),
                ("neg", "-3"),
                ("f", "0.5"),
                ("b", "true"),
                ("bad", "lots"),
                ("yes", "yes"),
            ],
            || {
                assert_eq!(parse::<u32>("n"), Ok(Some(42)));
                assert_eq!(parse::<i64>("neg"), Ok(Some(-3)));
                assert_eq!(parse::<f64>("f"), Ok(Some(0.5)));
                assert_eq!(parse::<bool>("b"), Ok(Some(true)));
                assert_eq!(parse::<u32>("missing"), Ok(None));
                assert_eq!(parse_or("missing", 7u32), Ok(7));
                assert_eq!(parse_or("n", 7u32), Ok(42));
                let e = parse::<u32>("bad").unwrap_err();
                assert_eq!(e.code, "bad-config");
                assert_eq!(e.message, "bad must be a whole number, got \"lots\"");
                assert_eq!(
                    parse::<u32>("neg").unwrap_err().message,
                    "neg must be a whole number, got \"-3\""
                );
                assert_eq!(
                    parse_or("yes", false).unwrap_err().message,
                    "yes must be true or false, got \"yes\""
                );
            },
        );
    }

    #[test]
    fn own_types_parse_too() {
        #[derive(Debug, PartialEq)]
        enum Mode {
            Fast,
            Slow,
        }
        impl Value for Mode {
            const EXPECTED: &'static str = "fast or slow";
            fn from_config(text: &str) -> Option<Self> {
                match text {
                    "fast" => Some(Mode::Fast),
                    "slow" => Some(Mode::Slow),
                    _ => None,
                }
            }
        }
        with_config(&[("mode", "slow"), ("other", "medium")], || {
            assert_eq!(parse_or("mode", Mode::Fast), Ok(Mode::Slow));
            assert_eq!(
                parse::<Mode>("other").unwrap_err().message,
                "other must be fast or slow, got \"medium\""
            );
        });
    }
}
