//! How a phone links a session: a QR code, or a pairing code for a phone
//! number.

use serde::{Deserialize, Serialize};

use super::*;

/// A QR code waiting to be scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrCode {
    pub qr: String,
    /// 1 for the first code of a login, +1 per rotation.
    pub attempt: u32,
    /// When the phone will no longer accept this code, ms.
    pub expires_at: i64,
}

/// A pairing code waiting to be typed on the phone: WhatsApp's "link with
/// phone number" alternative to scanning a QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairingCode {
    /// The 8 characters as WhatsApp Web shows them, `ABCD-EFGH`; the phone
    /// takes them with or without the dash.
    #[schema(example = "K7QP-3MXA")]
    pub code: String,
    /// 1 for the first code of a login, +1 per refresh.
    pub attempt: u32,
    /// When the phone will no longer accept this code, ms.
    pub expires_at: i64,
}

impl PairingCode {
    /// Writes 8 code characters the way WhatsApp Web shows them
    /// (`ABCDEFGH` → `ABCD-EFGH`); anything else is kept as it came, since
    /// the page, not the host, decides what a code looks like.
    pub fn display(raw: &str) -> String {
        let chars: String = raw
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if chars.len() == 8 {
            format!("{}-{}", &chars[..4], &chars[4..])
        } else {
            raw.trim().to_owned()
        }
    }
}

/// A phone number in international form, normalised to `+` and 7 to 15
/// digits (E.164: country code first, no leading zero).
///
/// People paste numbers as they see them (`+49 151 234-5678`), so spaces
/// and dashes are dropped; anything else (letters, dots, brackets, a
/// national `0151…` without country code) is refused rather than guessed,
/// because a wrong guess links nothing and says why nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

/// Longest phone number accepted as written (with its spaces and dashes).
pub const PHONE_NUMBER_MAX_LEN: usize = 32;

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let refuse = || {
            format!(
                "must be '+', the country code and the number: 7 to 15 digits in all (spaces and dashes are ignored), e.g. \"+49 151 2345678\"; got {:?}",
                raw.chars()
                    .take(PHONE_NUMBER_MAX_LEN + 8)
                    .collect::<String>()
            )
        };
        if raw.len() > PHONE_NUMBER_MAX_LEN {
            return Err(refuse());
        }
        let Some(rest) = raw.strip_prefix('+') else {
            return Err(refuse());
        };
        let digits: String = rest.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(7..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(refuse());
        }
        Ok(Self(format!("+{digits}")))
    }

    /// `+` and the digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits alone, as WhatsApp ids spell a number.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        PhoneNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// How a session links its WhatsApp account when it has no stored login:
/// the create body's `login`. Absent: a QR code to scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginOptions {
    /// Link with a pairing code for this number instead of a QR code: the
    /// account's own number, `+` and country code first; spaces and dashes
    /// are dropped (stored and echoed as `+4915123456789`).
    #[schema(value_type = String, pattern = r"^\+[0-9 -]+$", max_length = 32, example = "+49 151 2345678")]
    pub phone_number: PhoneNumber,
}

impl<'de> Deserialize<'de> for LoginOptions {
    /// Only from an object: serde's derive would also read `["+49…"]` as
    /// this struct, which no client means.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        struct Fields {
            phone_number: PhoneNumber,
        }
        struct Object;
        impl<'de> serde::de::Visitor<'de> for Object {
            type Value = LoginOptions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an object {"phoneNumber": "+…"}"#)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<LoginOptions, A::Error> {
                let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(LoginOptions {
                    phone_number: f.phone_number,
                })
            }
        }
        d.deserialize_map(Object)
    }
}
