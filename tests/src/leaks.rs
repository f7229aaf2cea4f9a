//! What counts as cardholder data leaking to a client, for the bypass
//! suites of both protocols.

/// Lowercase hex of a string's bytes.
pub fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64, without padding.
pub fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The Luhn check over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut d = u32::from(d - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

/// What in `out` would be a leak of one of `pans`, if anything: a PAN,
/// reversed, in hex or base64, or any other Luhn-valid run of 13–19
/// digits (spaces and dashes squeezed out).
pub fn leak(out: &str, pans: &[&str]) -> Option<String> {
    let squeezed: String = out.chars().filter(|c| *c != ' ' && *c != '-').collect();
    for pan in pans {
        let reversed: String = pan.chars().rev().collect();
        let b64 = base64(pan);
        for (form, what) in [
            (pan.to_string(), "PAN"),
            (reversed, "reversed PAN"),
            (hex(pan), "hex PAN"),
            (hex(pan).to_uppercase(), "HEX PAN"),
            (b64.trim_end_matches('=').to_string(), "base64 PAN"),
        ] {
            if squeezed.contains(&form) {
                return Some(format!("{what} {form}"));
            }
        }
    }
    // Any Luhn-valid run of 13 to 19 digits.
    let bytes = squeezed.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &bytes[start..i];
            if (13..=19).contains(&run.len()) && luhn(run) {
                return Some(format!("Luhn-valid {}", String::from_utf8_lossy(run)));
            }
        } else {
            i += 1;
        }
    }
    None
}
