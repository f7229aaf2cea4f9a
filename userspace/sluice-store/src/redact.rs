//! Cardholder data never enters the record in the clear: statement text,
//! parameters and error messages pass [`mask_pans`] before they are stored.
//!
//! A primary account number (PAN) is taken to be 13 to 19 digits, possibly
//! grouped by single spaces or dashes, that pass the Luhn check. It is
//! recorded in PCI DSS display form: the first six and last four digits
//! kept, the rest replaced by `*` (requirement 3.4.1).
use std::borrow::Cow;

/// `text` with every PAN-like digit run masked.
pub fn mask_pans(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // One run: digits, single separators between digits.
        let start = i;
        let mut digits = Vec::with_capacity(20);
        let mut end = i;
        while end < bytes.len() {
            let b = bytes[end];
            if b.is_ascii_digit() {
                digits.push(end);
                end += 1;
            } else if (b == b' ' || b == b'-')
                && end + 1 < bytes.len()
                && bytes[end + 1].is_ascii_digit()
            {
                end += 1;
            } else {
                break;
            }
        }
        if (13..=19).contains(&digits.len()) && luhn(digits.iter().map(|&p| bytes[p] - b'0')) {
            let o = out.get_or_insert_with(|| bytes.to_vec());
            for &p in &digits[6..digits.len() - 4] {
                o[p] = b'*';
            }
        }
        i = end.max(start + 1);
    }
    match out {
        // Only ASCII digits were replaced by an ASCII byte: still UTF-8.
        Some(o) => Cow::Owned(String::from_utf8(o).unwrap_or_default()),
        None => Cow::Borrowed(text),
    }
}

/// The Luhn (mod 10) check over digits, most significant first.
pub fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.rev().enumerate() {
        let d = u32::from(d);
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pans_are_masked_to_first_six_and_last_four() {
        assert_eq!(
            mask_pans("insert into cards values ('4111111111111111', 'A. Holder')"),
            "insert into cards values ('411111******1111', 'A. Holder')"
        );
        assert_eq!(
            mask_pans("pan=4111-1111-1111-1111"),
            "pan=4111-11**-****-1111"
        );
        assert_eq!(mask_pans("5555 5555 5555 4444!"), "5555 55** **** 4444!");
        // 19 digits (Luhn-valid), and 13.
        assert_eq!(mask_pans("6011000990139424"), "601100******9424");
        assert_eq!(mask_pans("4222222222222"), "422222***2222");
    }

    #[test]
    fn other_numbers_are_left_alone() {
        for s in [
            "select 1",
            "4111111111111112",     // fails Luhn
            "411111111111",         // 12 digits
            "41111111111111111111", // 20 digits
            "order 12345, phone 555-0100",
            "4111  1111 1111 1111", // double space breaks the run
        ] {
            assert!(matches!(mask_pans(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn multibyte_text_survives() {
        assert_eq!(mask_pans("ü 4111111111111111 ß"), "ü 411111******1111 ß");
    }
}
