//! Masking formats for declared sensitive columns.
//!
//! - [`MaskFormat::Pci`]: PCI DSS display — a value with 13 or more digits
//!   keeps its first six and last four digits, every other digit becomes
//!   `*`; a shorter value keeps at most its last four characters.
//! - [`MaskFormat::Redact`]: the value is replaced by `****`.
//! - [`MaskFormat::Token`]: `tok_` and 24 hex digits of HMAC-SHA-256 of the
//!   value under the configured key: equal values give equal tokens, so
//!   joins and grouping still work, and nobody without the key can link a
//!   token to a value.
//!
//! Only text-like values (text, varchar, char, name, unknown) can carry a
//! masked string. A sensitive value of any other type (a PAN stored as
//! `bigint` or `numeric`, a JSON document) becomes NULL: a string where the
//! client expects a number would break its driver, and nothing shorter than
//! NULL is safe.
use ring::hmac;

/// How a sensitive column is shown.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MaskFormat {
    /// PCI display form: at most the first six and last four digits of a
    /// card number (`411111******1111`); shorter values keep at most their
    /// last four characters.
    Pci,
    /// `tok_` and 24 hex digits of HMAC-SHA-256 under
    /// `masking.token_key_file`: equal values give equal tokens, so joins
    /// and GROUP BY still work.
    Token,
    /// Replaced entirely by `****`.
    Redact,
}

impl MaskFormat {
    /// The name used in configuration and records.
    pub fn as_str(self) -> &'static str {
        match self {
            MaskFormat::Pci => "pci",
            MaskFormat::Token => "token",
            MaskFormat::Redact => "redact",
        }
    }

    /// The stronger of two formats (for a value made from columns with
    /// different formats): redact > token > pci.
    pub fn strongest(self, other: MaskFormat) -> MaskFormat {
        self.max(other)
    }
}

/// Type OIDs whose values are plain strings in both wire formats.
pub fn text_like(type_oid: u32) -> bool {
    // unknown (0, 705), char, name, text, bpchar, varchar.
    matches!(type_oid, 0 | 705 | 18 | 19 | 25 | 1042 | 1043)
}

/// Applies masking formats; holds the token key.
#[derive(Clone)]
pub struct Masker {
    key: Option<hmac::Key>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("token_key", &self.key.is_some())
            .finish()
    }
}

impl Masker {
    /// A masker; `token_key` is needed for [`MaskFormat::Token`] (without
    /// it, tokens fall back to redaction — never to the clear value).
    pub fn new(token_key: Option<&[u8]>) -> Masker {
        Masker {
            key: token_key.map(|k| hmac::Key::new(hmac::HMAC_SHA256, k)),
        }
    }

    /// The masked form of `value`, or `None` for NULL (values that are not
    /// text-like).
    pub fn apply(&self, format: MaskFormat, value: &[u8], text_like: bool) -> Option<Vec<u8>> {
        if !text_like {
            return None;
        }
        Some(match format {
            MaskFormat::Pci => pci(value),
            MaskFormat::Redact => b"****".to_vec(),
            MaskFormat::Token => match &self.key {
                Some(key) => {
                    let tag = hmac::sign(key, value);
                    let mut out = b"tok_".to_vec();
                    for b in &tag.as_ref()[..12] {
                        out.extend_from_slice(format!("{b:02x}").as_bytes());
                    }
                    out
                }
                None => b"****".to_vec(),
            },
        })
    }
}

/// PCI display form of a value.
pub fn pci(value: &[u8]) -> Vec<u8> {
    let digits = value.iter().filter(|b| b.is_ascii_digit()).count();
    let mut out = value.to_vec();
    if digits >= 13 {
        let mut seen = 0;
        for b in out.iter_mut() {
            if b.is_ascii_digit() {
                if seen >= 6 && seen < digits - 4 {
                    *b = b'*';
                }
                seen += 1;
            }
        }
        return out;
    }
    // Short values: at most the last four characters, and none of a value
    // of eight or fewer (a CVV, a PIN block, a name fragment).
    let chars: Vec<char> = String::from_utf8_lossy(value).chars().collect();
    let keep = if chars.len() > 8 { 4 } else { 0 };
    let masked: String = chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i + keep >= chars.len() { *c } else { '*' })
        .collect();
    masked.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_table() {
        let m = Masker::new(Some(b"k"));
        let cases: &[(MaskFormat, &str, bool, Option<&str>)] = &[
            (
                MaskFormat::Pci,
                "4111111111111111",
                true,
                Some("411111******1111"),
            ),
            (
                MaskFormat::Pci,
                "4111-1111-1111-1111",
                true,
                Some("4111-11**-****-1111"),
            ),
            (
                MaskFormat::Pci,
                "378282246310005",
                true,
                Some("378282*****0005"),
            ),
            (MaskFormat::Pci, "123", true, Some("***")),
            (
                MaskFormat::Pci,
                "Jane Q Cardholder",
                true,
                Some("*************lder"),
            ),
            (MaskFormat::Redact, "4111111111111111", true, Some("****")),
            (MaskFormat::Redact, "", true, Some("****")),
            (MaskFormat::Pci, "4111111111111111", false, None),
            (MaskFormat::Token, "x", false, None),
        ];
        for (f, v, text, want) in cases {
            let got = m.apply(*f, v.as_bytes(), *text);
            assert_eq!(
                got.as_deref(),
                want.map(str::as_bytes),
                "{f:?} {v:?} text={text}"
            );
        }
    }

    #[test]
    fn tokens_are_keyed_and_stable() {
        let a = Masker::new(Some(b"key one"));
        let b = Masker::new(Some(b"key two"));
        let t1 = a
            .apply(MaskFormat::Token, b"4111111111111111", true)
            .unwrap();
        let t2 = a
            .apply(MaskFormat::Token, b"4111111111111111", true)
            .unwrap();
        let t3 = b
            .apply(MaskFormat::Token, b"4111111111111111", true)
            .unwrap();
        assert_eq!(t1, t2);
        assert_ne!(t1, t3);
        assert!(t1.starts_with(b"tok_") && t1.len() == 28);
        assert!(!String::from_utf8_lossy(&t1).contains("1111"));
        // No key: never the clear value.
        let none = Masker::new(None);
        assert_eq!(
            none.apply(MaskFormat::Token, b"4111", true).unwrap(),
            b"****"
        );
    }

    #[test]
    fn strongest_format_wins() {
        assert_eq!(
            MaskFormat::Pci.strongest(MaskFormat::Redact),
            MaskFormat::Redact
        );
        assert_eq!(
            MaskFormat::Token.strongest(MaskFormat::Pci),
            MaskFormat::Token
        );
    }
}
