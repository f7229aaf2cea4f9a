//! Content detectors run on every value the database sends to a client:
//! result rows, COPY data, error, notice and notification text, whatever
//! the SQL analysis concluded. A missed card number is a leak, so the
//! detectors fail closed; they also sit on the hot path, so a value with no
//! candidate is rejected by a word-at-a-time pre-filter without allocating.
//!
//! Always on:
//!
//! - **PAN**: 13 to 19 ASCII digits, possibly grouped by single spaces or
//!   single dashes between digits, passing the Luhn check. Letters around
//!   the digits do not matter (`x4111111111111111y` is a PAN). Leading
//!   zeros are not part of the account number: a run is judged by its
//!   digits after the leading zeros, so `0000000000042` (13 digits) is not
//!   a PAN while `00004111111111111111` (20 digits) is. A run whose
//!   significant part is longer than 19 digits is searched for Luhn-valid
//!   windows of 13 to 19 digits that do not start with `0`, and the union
//!   of their hits is masked. A run of 13 to 19 significant digits is
//!   judged as a whole (otherwise some window of almost every 16-19 digit
//!   number would pass Luhn). A run grouped by separators is judged by its
//!   spans of whole consecutive groups holding 13 to 19 digits, each like
//!   a run of its own (a group of more than 19 digits is searched as
//!   above): a written card number starts and ends at group boundaries,
//!   and cutting groups would find a Luhn-valid window in most long
//!   dash-joined numbers (`83868641912-28773972837-…`, sysbench's filler,
//!   is not masked). A dash-grouped run inside a canonical UUID
//!   (`8-4-4-4-12` hex digits standing as a token of its own) is not
//!   judged: about one random UUID in 500 holds a Luhn-valid grouped run,
//!   and no card grouping has that shape.
//! - **Reversed PAN**: a 13 to 19 digit run whose reverse passes Luhn and
//!   starts with a plausible issuer digit (2 to 6) is a PAN too; this
//!   defeats `reverse(pan)`. At most three leading zeros are tolerated
//!   (they are the trailing zeros of the real PAN), so zero-padded small
//!   numbers are not taken for reversed PANs.
//! - **Track 2**: `;` + 13-19 digits + `=` + digits (+ `?`), or, without the
//!   sentinel, a Luhn-valid 13-19 digit run followed by `=` and at least 7
//!   digits. The PAN is masked as below and every digit after `=` is
//!   replaced by `*`.
//! - **Track 1**: `%B` + 13-19 digits + `^` + name (up to 26 characters) +
//!   `^` + data up to the end sentinel `?` (or to the end of the digits
//!   when there is no `?`). The PAN is masked, the name and the data are
//!   replaced by `*`. The sentinel framing is specific enough that track
//!   data with the leading `;`/`%B` is masked even when the PAN fails Luhn.
//!
//! Masking follows the PCI DSS display form: the first six and last four
//! digits of a PAN are kept, the other digits become `*`; separators stay
//! and the length never changes. Only ASCII bytes are ever replaced, so
//! UTF-8 text stays UTF-8. Masking is final: a masked value is scanned
//! again, and masked further, until the PAN and track detectors find
//! nothing in it (masking a span can cut a group and leave a new span of
//! whole groups behind).
//!
//! Optional ([`DetectorSet`]):
//!
//! - **CVV** (on by default): a whole value of 3 or 4 digits (surrounding
//!   whitespace ignored) in a column whose name says it is a card
//!   verification value: it contains `cvv`, `cvc`, `card_verification` or
//!   `security_code` (case and `_`/`-` ignored), or has a word `cid` or
//!   `csc` (words split at non-letters and camelCase humps, so `incident`
//!   does not match).
//! - **Email**: `local@domain.tld`; the first character of the local part
//!   and the domain are kept.
//! - **SSN**: US `ddd-dd-dddd` not preceded or followed by a digit or a
//!   dash; all but the last four digits are masked.
//! - **IBAN**: two uppercase letters, two digits, 11 to 30 uppercase
//!   letters or digits (compact or grouped by single spaces in fours),
//!   passing the ISO 7064 mod-97 check; all but the first and last four
//!   characters are masked.
//!
//! All detectors look at the original value and their masks are united,
//! so one detector's mask can never hide a candidate from another (digits
//! of an IBAN may therefore also be masked, and counted, as a PAN).
//!
//! Speed: values without a run of 13 digits (grouped as above), the
//! common case, are rejected eight bytes at a time, without allocating;
//! the optional detectors are plain byte loops and cost more.
use serde::Deserialize;
use std::borrow::Cow;

/// Which optional detectors are on. PAN and track data are always on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorSet {
    /// 3-4 digit values in columns named like a card verification value
    /// (`cvv`, `cvc2`, `security_code`, ...). On by default.
    pub cvv: bool,
    /// Email addresses. Off by default.
    pub email: bool,
    /// US social security numbers (`ddd-dd-dddd`). Off by default.
    pub ssn: bool,
    /// International bank account numbers (mod-97 checked). Off by default.
    pub iban: bool,
}

impl Default for DetectorSet {
    fn default() -> Self {
        DetectorSet {
            cvv: true,
            email: false,
            ssn: false,
            iban: false,
        }
    }
}

/// What a detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A primary account number (also a reversed one).
    Pan,
    /// Magnetic stripe track 1 data (`%B...^NAME^...?`).
    Track1,
    /// Magnetic stripe track 2 data (`;PAN=...?`).
    Track2,
    /// A card verification value, judged by its column's name.
    Cvv,
    /// An email address.
    Email,
    /// A US social security number.
    Ssn,
    /// An international bank account number.
    Iban,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 7] = [
        Kind::Pan,
        Kind::Track1,
        Kind::Track2,
        Kind::Cvv,
        Kind::Email,
        Kind::Ssn,
        Kind::Iban,
    ];

    /// The kind's name in logs, metrics and configuration: `"pan"`,
    /// `"track1"`, `"track2"`, `"cvv"`, `"email"`, `"ssn"`, `"iban"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pan => "pan",
            Kind::Track1 => "track1",
            Kind::Track2 => "track2",
            Kind::Cvv => "cvv",
            Kind::Email => "email",
            Kind::Ssn => "ssn",
            Kind::Iban => "iban",
        }
    }
}

/// Counts per kind of one scan (or of several, see [`Findings::add`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Findings {
    counts: [u32; 7],
}

impl Findings {
    /// All findings, whatever their kind.
    pub fn total(&self) -> u32 {
        self.counts.iter().fold(0u32, |a, &c| a.saturating_add(c))
    }

    /// The findings of one kind.
    pub fn get(&self, k: Kind) -> u32 {
        self.counts[k as usize]
    }

    /// Adds `other`'s counts to these (saturating).
    pub fn add(&mut self, other: &Findings) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a = a.saturating_add(b);
        }
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// The kinds with a non-zero count, with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, u32)> + '_ {
        Kind::ALL
            .into_iter()
            .map(|k| (k, self.get(k)))
            .filter(|&(_, c)| c > 0)
    }

    fn bump(&mut self, k: Kind) {
        let c = &mut self.counts[k as usize];
        *c = c.saturating_add(1);
    }
}

/// The detectors of one [`DetectorSet`], ready to scan values.
#[derive(Debug, Clone)]
pub struct Scanner {
    set: DetectorSet,
}

impl Scanner {
    /// A scanner running the always-on detectors and those `set` enables.
    pub fn new(set: &DetectorSet) -> Scanner {
        Scanner { set: set.clone() }
    }

    /// Scan one value in its text form (UTF-8 or arbitrary bytes). None
    /// when nothing was found (the hot path: no allocation). Otherwise the
    /// masked bytes (same length as `value`) and the findings.
    /// `column` is the column's name when known (used for CVV context).
    #[inline]
    pub fn scan(&self, value: &[u8], column: Option<&str>) -> Option<(Vec<u8>, Findings)> {
        if self.set.cvv
            && let Some(col) = column
            && let Some((a, b)) = cvv_digits(value)
            && is_cvv_column(col.as_bytes())
        {
            let mut out = value.to_vec();
            out[a..b].fill(b'*');
            let mut f = Findings::default();
            f.bump(Kind::Cvv);
            return Some((out, f));
        }
        let cards = has_long_run(value);
        if !(cards || self.set.iban || self.set.ssn || self.set.email) {
            return None;
        }
        self.scan_rest(value, cards)
    }

    /// The detectors past the pre-filter.
    #[inline(never)]
    fn scan_rest(&self, value: &[u8], cards: bool) -> Option<(Vec<u8>, Findings)> {
        let mut c = Ctx::new(value, false);
        if cards {
            scan_cards(&mut c);
        }
        if self.set.iban || self.set.ssn || self.set.email {
            let x = Extras::of(value);
            // An IBAN has 15 or more uppercase letters and digits, two of
            // them digits; an SSN nine digits and a dash.
            if self.set.iban && x.upper_or_digits >= 15 && x.digits >= 2 {
                scan_iban(&mut c);
            }
            if self.set.ssn && x.dash && x.digits >= 9 {
                scan_ssn(&mut c);
            }
            if self.set.email && x.at {
                scan_email(&mut c);
            }
        }
        let (mut out, findings) = c.finish()?;
        if cards {
            mask_until_final(&mut out);
        }
        Some((out, findings))
    }

    /// Same as [`Scanner::scan`], for a str (errors, notices):
    /// `Cow::Borrowed` and empty findings when nothing was found.
    pub fn scan_str<'a>(&self, text: &'a str, column: Option<&str>) -> (Cow<'a, str>, Findings) {
        match self.scan(text.as_bytes(), column) {
            None => (Cow::Borrowed(text), Findings::default()),
            // Only ASCII bytes are replaced by `*`: still UTF-8. The lossy
            // conversion is a guard that never runs.
            Some((out, f)) => {
                let s = String::from_utf8(out)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                (Cow::Owned(s), f)
            }
        }
    }

    /// A numeric value decoded from a binary wire format (int8, numeric)
    /// as its decimal digits (optionally signed, optionally with a
    /// fraction): true if it holds a PAN by the same rules as text
    /// (13-19 significant digits passing Luhn, reversed PANs, Luhn windows
    /// of longer numbers). Leading zeros and the sign are not part of the
    /// number. Callers replace such a value by NULL.
    pub fn is_pan_number(digits: &str) -> bool {
        let b = digits.trim().as_bytes();
        if !has_long_run(b) {
            return false;
        }
        let mut c = Ctx::new(b, true);
        scan_cards(&mut c);
        !c.f.is_empty()
    }
}

/// The Luhn (mod 10) check over ASCII digits, most significant first.
/// False for an empty slice or one holding anything but ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    luhn_from_right(digits.iter().rev().map(|&b| b - b'0'))
}

/// `d` doubled with its digits summed, for Luhn.
const DOUBLE: [u32; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];

/// Luhn over digit values (0-9) given from the check digit leftwards.
fn luhn_from_right(digits: impl Iterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.enumerate() {
        let d = usize::from(d);
        sum += if i % 2 == 1 { DOUBLE[d] } else { d as u32 };
    }
    sum.is_multiple_of(10)
}

// --- The scan state -------------------------------------------------------

/// One scan: the original bytes, the masked copy once something was found,
/// and the findings.
struct Ctx<'a> {
    v: &'a [u8],
    out: Option<Vec<u8>>,
    f: Findings,
    /// Judge only (is_pan_number): never copy or mask.
    dry: bool,
}

impl<'a> Ctx<'a> {
    fn new(v: &'a [u8], dry: bool) -> Self {
        Ctx {
            v,
            out: None,
            f: Findings::default(),
            dry,
        }
    }

    #[inline]
    fn buf(&mut self) -> &mut Vec<u8> {
        let v = self.v;
        self.out.get_or_insert_with(|| v.to_vec())
    }

    fn star(&mut self, p: usize) {
        if !self.dry {
            self.buf()[p] = b'*';
        }
    }

    fn star_range(&mut self, a: usize, b: usize) {
        if !self.dry && a < b {
            self.buf()[a..b].fill(b'*');
        }
    }

    /// Masks a PAN given its digits' positions: all but the first six and
    /// the last four.
    fn mask_pan(&mut self, pos: &[usize]) {
        if pos.len() > 10 {
            for &p in &pos[6..pos.len() - 4] {
                self.star(p);
            }
        }
    }

    fn found(&mut self, k: Kind) {
        self.f.bump(k);
    }

    fn finish(self) -> Option<(Vec<u8>, Findings)> {
        if self.f.is_empty() {
            None
        } else {
            let v = self.v;
            Some((self.out.unwrap_or_else(|| v.to_vec()), self.f))
        }
    }
}

// --- Pre-filter -------------------------------------------------------------
//
// Eight bytes at a time (SWAR): per byte lane, is it a digit, is it a
// separator right after a digit. A PAN or track candidate needs a run of
// such lanes holding at least 13 digits; runs inside one word hold at most
// 8, so only runs crossing words (the prefix and suffix of each word) are
// tracked. The count is exact: the pre-filter passes exactly the values in
// which the precise scanner finds a grouped digit run of 13 or more digits.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// 0x80 in the lanes of `x` holding an ASCII digit.
#[inline(always)]
fn digit_lanes(x: u64) -> u64 {
    let x7 = x & LOW7;
    // No lane overflows: 0x7f + 0x50 < 0x100.
    let ge0 = x7.wrapping_add(LO * u64::from(0x80 - b'0'));
    let gt9 = x7.wrapping_add(LO * u64::from(0x7f - b'9'));
    ge0 & !gt9 & !x & HI
}

/// 0x80 in the lanes of `x` equal to `c`.
#[inline(always)]
fn eq_lanes(x: u64, c: u8) -> u64 {
    let y = x ^ (LO * u64::from(c));
    !((y & LOW7).wrapping_add(LOW7) | y) & HI
}

/// The number of lanes set in a lane mask (0x80 per lane).
#[inline(always)]
fn lanes(m: u64) -> u32 {
    ((m >> 7).wrapping_mul(LO) >> 56) as u32
}

/// Feeds one word; true once a run reaches 13 digits.
#[inline(always)]
fn step(x: u64, run: &mut u32, carry: &mut u64) -> bool {
    let d = digit_lanes(x);
    let s = eq_lanes(x, b' ') | eq_lanes(x, b'-');
    let m = d | (s & ((d << 8) | *carry));
    *carry = d >> 56;
    let gap = !m & HI;
    // Lanes before the first gap continue the run from the previous word
    // (all of them when there is no gap: `low` is 0).
    let low = gap & gap.wrapping_neg();
    let through = *run + lanes(d & (low >> 7).wrapping_sub(1));
    // Lanes after the last gap start the next run (`| 1`: defined for no
    // gap, where it is not used).
    let last = 63 - (gap | 1).leading_zeros();
    let after = lanes(d & !((2u64 << last).wrapping_sub(1)));
    *run = if gap == 0 { through } else { after };
    through >= 13
}

/// True if `v` has a run of 13 or more digits grouped by single spaces or
/// dashes: the precondition of every PAN and track detector.
#[inline]
fn has_long_run(v: &[u8]) -> bool {
    let len = v.len();
    if len < 13 {
        return false;
    }
    let chunks = v.chunks_exact(8);
    let rem = chunks.remainder().len();
    // The last bytes, loaded as the word ending the value and shifted so
    // that they sit in the low lanes (zero lanes are neither digits nor
    // separators); `len >= 13` so the load is in bounds.
    let tail = load(&v[len - 8..])
        .checked_shr(8 * (8 - rem) as u32)
        .unwrap_or(0);
    // Coarse: fewer than 13 digits in all, no run of 13.
    let digits: u32 = chunks
        .clone()
        .map(|ch| lanes(digit_lanes(load(ch))))
        .sum::<u32>()
        + lanes(digit_lanes(tail));
    if digits < 13 {
        return false;
    }
    let mut run = 0u32;
    let mut carry = 0u64;
    for ch in chunks {
        if step(load(ch), &mut run, &mut carry) {
            return true;
        }
    }
    step(tail, &mut run, &mut carry)
}

/// What the optional detectors need at the least, counted eight bytes at
/// a time: they skip the values that cannot hold their kind.
struct Extras {
    digits: u32,
    upper_or_digits: u32,
    dash: bool,
    at: bool,
}

impl Extras {
    fn of(v: &[u8]) -> Extras {
        // Per-lane sums fit a byte below 2040 bytes; longer values are
        // not pre-filtered.
        if v.len() >= 2040 {
            return Extras {
                digits: u32::MAX,
                upper_or_digits: u32::MAX,
                dash: true,
                at: true,
            };
        }
        let (mut digits, mut upper, mut dash, mut at) = (0u64, 0u64, 0u64, 0u64);
        let mut feed = |x: u64| {
            let d = digit_lanes(x);
            let x7 = x & LOW7;
            let ge_a = x7.wrapping_add(LO * u64::from(0x80 - b'A'));
            let gt_z = x7.wrapping_add(LO * u64::from(0x7f - b'Z'));
            digits += d >> 7;
            upper += (ge_a & !gt_z & !x & HI) >> 7;
            dash |= eq_lanes(x, b'-');
            at |= eq_lanes(x, b'@');
        };
        let mut chunks = v.chunks_exact(8);
        for ch in &mut chunks {
            feed(load(ch));
        }
        let rem = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rem.len()].copy_from_slice(rem);
        feed(u64::from_le_bytes(w));
        // Lane sums to 16-bit lanes, then their total.
        let sum = |a: u64| {
            let pairs = (a & 0x00ff_00ff_00ff_00ff) + ((a >> 8) & 0x00ff_00ff_00ff_00ff);
            (pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48) as u32
        };
        Extras {
            digits: sum(digits),
            upper_or_digits: sum(digits) + sum(upper),
            dash: dash != 0,
            at: at != 0,
        }
    }
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn load(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

// --- PAN and track data -------------------------------------------------------

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'-'
}

/// Masks what the card detectors find in an already masked value, until
/// they find nothing. Masking can make a candidate the original did not
/// hold: masked digits cut a group, and what is left of it before the `*`
/// is a whole group in the masked value (`7888888-78777888888-77`: the
/// span `78777888888-77` is masked to `787778***88-77`, and then
/// `7888888-787778` is 13 digits of whole groups passing Luhn). A masked
/// value must never hold what the detectors report. Each round masks at
/// least one more digit, so this ends; it only runs for values in which
/// something was found. The extra hits are not counted: they are pieces
/// of runs the first scan already judged.
fn mask_until_final(out: &mut Vec<u8>) {
    while has_long_run(out) {
        let mut c = Ctx::new(out, false);
        scan_cards(&mut c);
        match c.out {
            Some(more) if more != *out => *out = more,
            _ => return,
        }
    }
}

/// Every grouped digit run of `c.v`, judged.
fn scan_cards(c: &mut Ctx<'_>) {
    let v = c.v;
    let len = v.len();
    let mut i = 0;
    while i < len {
        if !v[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut n = 1usize;
        let mut j = i + 1;
        let mut grouped = false;
        while j < len {
            let b = v[j];
            if b.is_ascii_digit() {
                n += 1;
                j += 1;
            } else if is_sep(b) && j + 1 < len && v[j + 1].is_ascii_digit() {
                grouped = true;
                j += 1;
            } else {
                break;
            }
        }
        i = if n < 13 {
            j
        } else if grouped {
            judge_grouped(c, start, j)
        } else {
            judge_run(c, start, j, n)
        };
    }
}

/// Judges a run of digit groups joined by single separators at
/// `v[start..end]` (13 digits or more in all); returns where scanning
/// resumes. A card number written in groups starts and ends at group
/// boundaries, so the candidates are the spans of whole consecutive
/// groups holding 13 to 19 digits, each judged like a run of its own; a
/// single group longer than 19 digits is searched like any long run.
/// Groups are never split: `83868641912-28773972837-...` (sysbench's
/// filler, groups of 11) holds no candidate, where searching the 110
/// digits as one run found Luhn-valid windows in most values.
fn judge_grouped(c: &mut Ctx<'_>, start: usize, end: usize) -> usize {
    let v = c.v;
    if in_uuid(v, start, end) {
        return end;
    }
    let group_end = |from: usize| {
        from + v[from..end]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut first = start;
    while first < end {
        let mut p = first;
        let mut total = 0;
        loop {
            let q = group_end(p);
            total += q - p;
            if total > 19 {
                if p == first {
                    judge_run(c, first, q, total);
                }
                break;
            }
            if total >= 13 {
                judge_span(c, first, q, total);
            }
            if q >= end {
                break;
            }
            p = q + 1;
        }
        first = group_end(first) + 1;
    }
    end
}

/// Copies the digits of `v[start..end]` after the first `skip` into `val`
/// (as values 0-9) and `pos`; returns how many (at most 19 are stored).
fn collect(
    v: &[u8],
    start: usize,
    end: usize,
    skip: usize,
    val: &mut [u8; 19],
    pos: &mut [usize; 19],
) -> usize {
    let mut k = 0;
    let mut seen = 0;
    for (p, &b) in v.iter().enumerate().take(end).skip(start) {
        if !b.is_ascii_digit() {
            continue;
        }
        seen += 1;
        if seen <= skip {
            continue;
        }
        if k == 19 {
            break;
        }
        val[k] = b - b'0';
        pos[k] = p;
        k += 1;
    }
    k
}

/// Judges one ungrouped run of `n` >= 13 digits at `v[start..end]`;
/// returns where scanning resumes (past the run, or past track data).
fn judge_run(c: &mut Ctx<'_>, start: usize, end: usize, n: usize) -> usize {
    if n <= 19 {
        if let Some(next) = track1(c, start, end) {
            return next;
        }
        if let Some(next) = track2(c, start, end) {
            return next;
        }
    }
    let zeros = c.v[start..end].iter().take_while(|&&b| b == b'0').count();
    if n - zeros > 19 {
        windows(c, start, end);
    } else {
        judge_span(c, start, end, n);
    }
    end
}

/// Judges the `n` digits of `v[start..end]` as one number, forwards (after
/// its leading zeros) and reversed; masks and counts a hit. Whether it hit.
fn judge_span(c: &mut Ctx<'_>, start: usize, end: usize, n: usize) -> bool {
    let v = c.v;
    let zeros = v[start..end]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .take_while(|&&b| b == b'0')
        .count();
    let sig = n - zeros;
    let mut val = [0u8; 19];
    let mut pos = [0usize; 19];
    if (13..=19).contains(&sig) {
        let k = collect(v, start, end, zeros, &mut val, &mut pos);
        if luhn_from_right(val[..k].iter().rev().copied()) {
            c.mask_pan(&pos[..k]);
            c.found(Kind::Pan);
            return true;
        }
    }
    if (13..=19).contains(&n) && zeros <= 3 {
        let k = collect(v, start, end, 0, &mut val, &mut pos);
        // The reverse, check digit first: `val` read left to right.
        if (2..=6).contains(&val[k - 1]) && luhn_from_right(val[..k].iter().copied()) {
            c.mask_pan(&pos[..k]);
            c.found(Kind::Pan);
            return true;
        }
    }
    false
}

/// Whether the grouped run `v[start..end]` lies in a UUID in canonical
/// form (8-4-4-4-12 hex digits, a token of its own). UUIDs are everywhere
/// in row data and about one in 500 random ones holds a dash-grouped
/// Luhn-valid run; no PAN grouping has their shape.
fn in_uuid(v: &[u8], start: usize, end: usize) -> bool {
    let hexdash = |b: u8| b.is_ascii_hexdigit() || b == b'-';
    let mut a = start;
    while a > 0 && hexdash(v[a - 1]) {
        if end - a >= 36 {
            return false;
        }
        a -= 1;
    }
    let mut b = end;
    while b < v.len() && hexdash(v[b]) {
        if b - a >= 36 {
            return false;
        }
        b += 1;
    }
    b - a == 36
        && (a == 0 || !v[a - 1].is_ascii_alphanumeric())
        && (b == v.len() || !v[b].is_ascii_alphanumeric())
        && v[a..b].iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// A run of more than 19 significant digits: every window of 13 to 19
/// digits not starting with `0` that passes Luhn is masked (first six and
/// last four of the window kept), the union of all of them.
fn windows(c: &mut Ctx<'_>, start: usize, end: usize) {
    let v = c.v;
    let mut val = [0u8; 19];
    let mut pos = [0usize; 19];
    let mut k = 0usize; // digits seen
    let mut last_hit: Option<usize> = None; // digit index of the last hit's end
    for (p, &b) in v.iter().enumerate().take(end).skip(start) {
        if !b.is_ascii_digit() {
            continue;
        }
        val[k % 19] = b - b'0';
        pos[k % 19] = p;
        k += 1;
        if k < 13 {
            continue;
        }
        // Windows ending at digit k-1, growing leftwards; the longest hit
        // masks a superset of the shorter ones'.
        let mut sum = 0u32;
        let mut longest = 0;
        for l in 1..=k.min(19) {
            let d = val[(k - l) % 19];
            sum += if l % 2 == 0 {
                DOUBLE[usize::from(d)]
            } else {
                u32::from(d)
            };
            if l >= 13 && d != 0 && sum.is_multiple_of(10) {
                longest = l;
            }
        }
        if longest == 0 {
            continue;
        }
        let first = k - longest;
        if last_hit.is_none_or(|e| first > e) {
            c.found(Kind::Pan);
        }
        last_hit = Some(k - 1);
        for idx in first + 6..k - 4 {
            c.star(pos[idx % 19]);
        }
    }
}

/// Letters, space, `/`, `.`, `-`, `'`, `,`: a track 1 name character.
fn is_name(b: u8) -> bool {
    b.is_ascii_alphabetic() || matches!(b, b' ' | b'/' | b'.' | b'-' | b'\'' | b',')
}

/// `%B` PAN `^` NAME `^` DATA [`?`], the PAN at `v[start..end]`.
fn track1(c: &mut Ctx<'_>, start: usize, end: usize) -> Option<usize> {
    let v = c.v;
    let len = v.len();
    if start < 2 || v[start - 1] != b'B' || v[start - 2] != b'%' || end >= len || v[end] != b'^' {
        return None;
    }
    let name = end + 1;
    let mut k = name;
    while k < len && k - name < 26 && is_name(v[k]) {
        k += 1;
    }
    if k >= len || v[k] != b'^' {
        return None;
    }
    let data = k + 1;
    let mut q = data;
    while q < len
        && q - data < 79
        && v[q] != b'?'
        && (0x20..=0x7e).contains(&v[q])
        && !matches!(v[q], b'%' | b'^' | b';')
    {
        q += 1;
    }
    let data_end = if q < len && v[q] == b'?' {
        q
    } else {
        data + v[data..].iter().take_while(|b| b.is_ascii_digit()).count()
    };
    let pos: [usize; 19] = std::array::from_fn(|i| start + i);
    c.mask_pan(&pos[..end - start]);
    c.star_range(name, k);
    c.star_range(data, data_end);
    c.found(Kind::Track1);
    Some(data_end)
}

/// [`;`] PAN `=` DIGITS [`?`], the PAN at `v[start..end]`.
fn track2(c: &mut Ctx<'_>, start: usize, end: usize) -> Option<usize> {
    let v = c.v;
    if end >= v.len() || v[end] != b'=' {
        return None;
    }
    let sentinel = start >= 1 && v[start - 1] == b';';
    let data = end + 1;
    let data_end = data + v[data..].iter().take_while(|b| b.is_ascii_digit()).count();
    if !(sentinel || (data_end - data >= 7 && luhn(&v[start..end]))) {
        return None;
    }
    let pos: [usize; 19] = std::array::from_fn(|i| start + i);
    c.mask_pan(&pos[..end - start]);
    c.star_range(data, data_end);
    c.found(Kind::Track2);
    Some(data_end)
}

// --- CVV ---------------------------------------------------------------------

/// The digits' range when `v` is 3 or 4 ASCII digits, whitespace aside.
#[inline]
fn cvv_digits(v: &[u8]) -> Option<(usize, usize)> {
    if v.len() < 3 || v.len() > 16 {
        return None;
    }
    let a = v.iter().position(|b| !b.is_ascii_whitespace())?;
    let b = v.len() - v.iter().rev().position(|b| !b.is_ascii_whitespace())?;
    ((b - a == 3 || b - a == 4) && v[a..b].iter().all(u8::is_ascii_digit)).then_some((a, b))
}

/// Whether a column name says "card verification value".
fn is_cvv_column(col: &[u8]) -> bool {
    const NEEDLES: [&[u8]; 4] = [b"cvv", b"cvc", b"cardverification", b"securitycode"];
    const WORDS: [&[u8]; 2] = [b"cid", b"csc"];
    // Every name above has a `c`: most columns are rejected here.
    if !col.iter().any(|&b| b | 0x20 == b'c') {
        return false;
    }
    let mut stack = [0u8; 128];
    let heap: Vec<u8>;
    let norm: &[u8] = if col.len() <= stack.len() {
        let mut n = 0;
        for &b in col.iter().filter(|b| b.is_ascii_alphanumeric()) {
            stack[n] = b.to_ascii_lowercase();
            n += 1;
        }
        &stack[..n]
    } else {
        heap = col
            .iter()
            .filter(|b| b.is_ascii_alphanumeric())
            .map(u8::to_ascii_lowercase)
            .collect();
        &heap
    };
    if NEEDLES
        .iter()
        .any(|nd| norm.windows(nd.len()).any(|w| w == *nd))
    {
        return true;
    }
    // Words: letters, split at anything else and at camelCase humps.
    let mut i = 0;
    while i < col.len() {
        if !col[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let s = i;
        i += 1;
        while i < col.len()
            && col[i].is_ascii_alphabetic()
            && !(col[i].is_ascii_uppercase() && col[i - 1].is_ascii_lowercase())
        {
            i += 1;
        }
        if WORDS.iter().any(|w| col[s..i].eq_ignore_ascii_case(w)) {
            return true;
        }
    }
    false
}

// --- Email -------------------------------------------------------------------

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// A domain with at least two non-empty labels and an alphabetic TLD of
/// two or more letters.
fn valid_domain(d: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for l in d.split(|&b| b == b'.') {
        if l.is_empty() {
            return false;
        }
        labels += 1;
        last = l;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

fn scan_email(c: &mut Ctx<'_>) {
    let v = c.v;
    let len = v.len();
    let mut i = 0;
    while i < len {
        let Some(off) = v[i..].iter().position(|&b| b == b'@') else {
            return;
        };
        let at = i + off;
        i = at + 1;
        let mut a = at;
        while a > 0 && is_local(v[a - 1]) {
            a -= 1;
        }
        while a < at && v[a] == b'.' {
            a += 1;
        }
        if a == at {
            continue;
        }
        let mut e = at + 1;
        while e < len && is_domain(v[e]) {
            e += 1;
        }
        while e > at + 1 && matches!(v[e - 1], b'.' | b'-') {
            e -= 1;
        }
        if !valid_domain(&v[at + 1..e]) {
            continue;
        }
        c.star_range(a + 1, at);
        c.found(Kind::Email);
        i = e;
    }
}

// --- SSN ---------------------------------------------------------------------

fn scan_ssn(c: &mut Ctx<'_>) {
    let v = c.v;
    if v.len() < 11 {
        return;
    }
    let d = |p: usize| v[p].is_ascii_digit();
    let edge = |p: usize| v[p].is_ascii_digit() || v[p] == b'-';
    let mut i = 0;
    while i + 11 <= v.len() {
        if v[i + 3] == b'-'
            && v[i + 6] == b'-'
            && d(i)
            && d(i + 1)
            && d(i + 2)
            && d(i + 4)
            && d(i + 5)
            && (i + 7..i + 11).all(d)
            && (i == 0 || !edge(i - 1))
            && (i + 11 == v.len() || !edge(i + 11))
        {
            c.star_range(i, i + 3);
            c.star_range(i + 4, i + 6);
            c.found(Kind::Ssn);
            i += 11;
        } else {
            i += 1;
        }
    }
}

// --- IBAN --------------------------------------------------------------------

fn is_iban_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

fn scan_iban(c: &mut Ctx<'_>) {
    let v = c.v;
    let mut i = 0;
    while i + 15 <= v.len() {
        if v[i].is_ascii_uppercase()
            && v[i + 1].is_ascii_uppercase()
            && v[i + 2].is_ascii_digit()
            && v[i + 3].is_ascii_digit()
            && (i == 0 || !v[i - 1].is_ascii_alphanumeric())
            && let Some(next) = iban_at(c, i)
        {
            i = next;
            continue;
        }
        i += 1;
    }
}

/// ISO 7064 mod 97-10 over the characters at `pos`, the first four moved
/// to the end.
fn mod97(v: &[u8], pos: &[usize]) -> bool {
    let mut r = 0u32;
    for &p in pos[4..].iter().chain(&pos[..4]) {
        let b = v[p];
        r = if b.is_ascii_digit() {
            (r * 10 + u32::from(b - b'0')) % 97
        } else {
            (r * 100 + u32::from(b - b'A') + 10) % 97
        };
    }
    r == 1
}

/// An IBAN starting at `i` (country code and check digits checked by the
/// caller): where scanning resumes, or None.
fn iban_at(c: &mut Ctx<'_>, i: usize) -> Option<usize> {
    let v = c.v;
    let len = v.len();
    let mut pos = [0usize; 34];
    for (k, p) in pos.iter_mut().take(4).enumerate() {
        *p = i + k;
    }
    let mut n = 4;
    // Candidate ends: (characters, byte end), shortest first.
    let mut cands = [(0usize, 0usize); 9];
    let mut nc = 0;
    let mut j = i + 4;
    if j < len && v[j] == b' ' {
        // Grouped in fours by single spaces; the last group may be short.
        while j < len && v[j] == b' ' {
            let g0 = j + 1;
            let mut k = g0;
            while k < len && k - g0 < 4 && is_iban_char(v[k]) {
                k += 1;
            }
            let g = k - g0;
            if g == 0 || n + g > 34 || (k < len && v[k].is_ascii_alphanumeric()) {
                break;
            }
            for p in g0..k {
                pos[n] = p;
                n += 1;
            }
            j = k;
            if n >= 15 && nc < cands.len() {
                cands[nc] = (n, j);
                nc += 1;
            }
            if g < 4 {
                break;
            }
        }
    } else {
        while j < len && is_iban_char(v[j]) {
            if n == 34 {
                return None;
            }
            pos[n] = j;
            n += 1;
            j += 1;
        }
        if (j < len && v[j].is_ascii_alphanumeric()) || n < 15 {
            return None;
        }
        cands[0] = (n, j);
        nc = 1;
    }
    for &(cn, end) in cands[..nc].iter().rev() {
        if mod97(v, &pos[..cn]) {
            for &p in &pos[4..cn - 4] {
                c.star(p);
            }
            c.found(Kind::Iban);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the always-on detectors and CVV (the default).
    const DEF: DetectorSet = DetectorSet {
        cvv: true,
        email: false,
        ssn: false,
        iban: false,
    };
    /// Everything off that can be.
    const MIN: DetectorSet = DetectorSet {
        cvv: false,
        email: false,
        ssn: false,
        iban: false,
    };
    /// Everything on.
    const ALL: DetectorSet = DetectorSet {
        cvv: true,
        email: true,
        ssn: true,
        iban: true,
    };

    type Case = (
        &'static str,
        Option<&'static str>,
        DetectorSet,
        Option<&'static str>,
    );

    const CASES: &[Case] = &[
        // Test PANs, bare.
        ("4111111111111111", None, DEF, Some("411111******1111")),
        ("5555555555554444", None, DEF, Some("555555******4444")),
        ("378282246310005", None, DEF, Some("378282*****0005")),
        ("6011111111111117", None, DEF, Some("601111******1117")),
        ("4000056655665556", None, DEF, Some("400005******5556")),
        ("3056930009020004", None, DEF, Some("305693******0004")),
        ("4222222222222", None, DEF, Some("422222***2222")),
        ("6011000990139424", None, MIN, Some("601100******9424")),
        // Grouped.
        (
            "4111 1111 1111 1111",
            None,
            DEF,
            Some("4111 11** **** 1111"),
        ),
        (
            "4111-1111-1111-1111",
            None,
            DEF,
            Some("4111-11**-****-1111"),
        ),
        ("3782 822463 10005", None, DEF, Some("3782 82**** *0005")),
        (
            "5555-5555 5555-4444",
            None,
            DEF,
            Some("5555-55** ****-4444"),
        ),
        // Double separators break the run.
        ("4111  1111 1111 1111", None, DEF, None),
        ("4111--1111-1111-1111", None, DEF, None),
        // Embedded in text, JSON, CSV.
        (
            "card 4111111111111111 on file",
            None,
            DEF,
            Some("card 411111******1111 on file"),
        ),
        (
            r#"{"pan":"5555555555554444","exp":"12/27"}"#,
            None,
            DEF,
            Some(r#"{"pan":"555555******4444","exp":"12/27"}"#),
        ),
        (
            "42,John Doe,378282246310005,2027-12-01",
            None,
            DEF,
            Some("42,John Doe,378282*****0005,2027-12-01"),
        ),
        (
            "a 4111111111111111 b 5555555555554444",
            None,
            DEF,
            Some("a 411111******1111 b 555555******4444"),
        ),
        (
            "ü 4111111111111111 ß",
            None,
            DEF,
            Some("ü 411111******1111 ß"),
        ),
        // Two PANs one space apart: two groups, each a card number.
        (
            "4111111111111111 5555555555554444",
            None,
            DEF,
            Some("411111******1111 555555******4444"),
        ),
        // Groups are spans of a card number or apart from it, never cut.
        (
            "12-4111111111111111-99",
            None,
            DEF,
            Some("12-411111******1111-99"),
        ),
        ("41111111-11111111", None, DEF, Some("411111**-****1111")),
        (
            "0000-4111-1111-1111-1111",
            None,
            DEF,
            Some("0000-4111-11**-****-1111"),
        ),
        (
            "99999999999999999994111111111111111199-1",
            None,
            DEF,
            Some("99999999999***********************1199-1"),
        ),
        // sysbench's filler: groups of 11 digits, no span of 13-19.
        (
            "83868641912-28773972837-60736120486-75162659906-27563526494-20381887404-41576422241-93426793964-56405065102-33518432170",
            None,
            DEF,
            None,
        ),
        // Glued to letters.
        ("x4111111111111111y", None, DEF, Some("x411111******1111y")),
        (
            "PAN4111111111111111",
            None,
            DEF,
            Some("PAN411111******1111"),
        ),
        // Inside longer digit runs.
        (
            "00004111111111111111",
            None,
            DEF,
            Some("0000411111******1111"),
        ),
        (
            "99999999999999999994111111111111111199",
            None,
            DEF,
            Some("99999999999***********************1199"),
        ),
        // Leading zeros: judged by the significant digits.
        ("04111111111111111", None, DEF, Some("0411111******1111")),
        ("0000000000042", None, DEF, None),
        // Luhn-invalid, too short, too long.
        ("4111111111111112", None, DEF, None),
        ("4111 1111 1111 1112", None, DEF, None),
        ("411111111111", None, DEF, None),
        ("40874138443622436890", None, DEF, None),
        // ... but a long number with a Luhn-valid window is masked there.
        (
            "12345678901234567890",
            None,
            DEF,
            Some("12345678********7890"),
        ),
        // A 17-digit run is judged whole: a PAN glued to one digit is not
        // searched for (it would make most 16-19 digit numbers hits).
        ("16665457398205182", None, DEF, None),
        ("14111111111111111", None, DEF, None),
        // Reversed PANs.
        ("1111111111111114", None, DEF, Some("111111******1114")),
        ("4444555555555555", None, DEF, Some("444455******5555")),
        // Track 2, with and without sentinels.
        (
            ";4111111111111111=25121010000012300000?",
            None,
            DEF,
            Some(";411111******1111=********************?"),
        ),
        (
            "4111111111111111=2512101123",
            None,
            DEF,
            Some("411111******1111=**********"),
        ),
        (
            ";4111111111111112=2512?",
            None,
            DEF,
            Some(";411111******1112=****?"),
        ),
        // Too few digits after `=` without the sentinel: just a PAN.
        (
            "4111111111111111=25",
            None,
            DEF,
            Some("411111******1111=25"),
        ),
        // Track 1.
        (
            "%B4111111111111111^DOE/JOHN^25121010000000000000?",
            None,
            DEF,
            Some("%B411111******1111^********^********************?"),
        ),
        (
            "%B5555555555554444^SMITH/JANE Q.^2712101",
            None,
            DEF,
            Some("%B555555******4444^*************^*******"),
        ),
        // CVV: column context required.
        ("123", Some("cvv"), DEF, Some("***")),
        ("1234", Some("card_CVC2"), DEF, Some("****")),
        (" 987 ", Some("SecurityCode"), DEF, Some(" *** ")),
        ("321", Some("card_cid"), DEF, Some("***")),
        ("321", Some("cardCsc"), DEF, Some("***")),
        ("123", Some("qty"), DEF, None),
        ("123", None, DEF, None),
        ("123", Some("cvv"), MIN, None),
        ("4321", Some("incident"), DEF, None),
        ("12345", Some("cvv"), DEF, None),
        ("12a", Some("cvv"), DEF, None),
        // Email.
        (
            "mail john.doe@example.com now",
            None,
            ALL,
            Some("mail j*******@example.com now"),
        ),
        ("john.doe@example.com", None, DEF, None),
        ("a@b.co", None, ALL, Some("a@b.co")),
        ("user@localhost", None, ALL, None),
        ("@example.com", None, ALL, None),
        // SSN.
        ("ssn 123-45-6789.", None, ALL, Some("ssn ***-**-6789.")),
        ("123-45-6789", None, DEF, None),
        ("1123-45-6789", None, ALL, None),
        ("123-45-67890", None, ALL, None),
        // IBAN.
        (
            "GB82WEST12345698765432",
            None,
            ALL,
            Some("GB82**************5432"),
        ),
        (
            "DE89 3704 0044 0532 0130 00",
            None,
            ALL,
            Some("DE89 **** **** **** **30 00"),
        ),
        (
            "iban: DE89370400440532013000.",
            None,
            ALL,
            Some("iban: DE89**************3000."),
        ),
        // With the IBAN detector off its digits still meet the PAN rules:
        // here 12345698765432 is a reversed PAN.
        (
            "GB82WEST12345698765432",
            None,
            DEF,
            Some("GB82WEST123456****5432"),
        ),
        (
            "DE89370400440532013000",
            None,
            MIN,
            Some("DE8937040********13000"),
        ),
        ("GB82WEST12345698765433", None, ALL, None),
        // Not card data: phones, dates, timestamps, UUIDs, amounts.
        ("+1 555-123-4567", None, ALL, None),
        ("+44 20 7946 0958", None, ALL, None),
        ("2024-01-15 12:30:45.123+00", None, ALL, None),
        ("2024-01-15", None, ALL, None),
        ("550e8400-e29b-41d4-a716-446655440000", None, ALL, None),
        // UUIDs whose dash-grouped digits pass Luhn: left alone.
        ("adf263b4-cbc0-4866-8635-599396796196", None, DEF, None),
        ("{27760372-1484-4878-8414-F4685C148F48}", None, DEF, None),
        (
            r#"{"id":"a09d5073-da3c-4106-9042-60238728d8c4"}"#,
            None,
            DEF,
            None,
        ),
        // ... not UUID-shaped: judged by its spans of whole groups
        // (4866-8635, 8635-599396796196: no card number; the Luhn-valid
        // window inside "4866-8635-599396796" cuts a group, so it is none).
        ("adf263b4-cbc0-4866-8635-599396796196x", None, DEF, None),
        // Both 4111-1111-1111-1111 and 27760372-4111-1111 pass Luhn.
        (
            "27760372-4111-1111-1111-1111",
            None,
            DEF,
            Some("277603**-****-11**-****-1111"),
        ),
        ("123456.78", None, ALL, None),
        ("Alice Johnson", None, ALL, None),
        ("", Some("cvv"), ALL, None),
    ];

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for (i, &(input, column, ref set, want)) in CASES.iter().enumerate() {
            let got = Scanner::new(set)
                .scan(input.as_bytes(), column)
                .map(|(o, f)| {
                    assert!(!f.is_empty(), "case {i}: findings empty");
                    assert_eq!(o.len(), input.len(), "case {i}: length changed");
                    String::from_utf8(o).expect("utf-8")
                });
            if got.as_deref() != want {
                failures.push(format!(
                    "case {i} {input:?} {column:?}: got {got:?}, want {want:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(CASES.len() >= 40);
    }

    #[test]
    fn findings_by_kind() {
        let s = Scanner::new(&ALL);
        let f = |t: &str, col| s.scan(t.as_bytes(), col).map(|x| x.1).unwrap_or_default();
        let one = |k| {
            let mut x = Findings::default();
            x.bump(k);
            x
        };
        assert_eq!(f("4111111111111111", None), one(Kind::Pan));
        assert_eq!(f(";4111111111111111=2512101?", None), one(Kind::Track2));
        assert_eq!(f("%B4111111111111111^DOE/J^2512?", None), one(Kind::Track1));
        assert_eq!(f("123", Some("cvv2")), one(Kind::Cvv));
        assert_eq!(f("x@y.org", None), one(Kind::Email));
        assert_eq!(f("123-45-6789", None), one(Kind::Ssn));
        assert_eq!(f("GB82 WEST 1234 5698 7654 32", None).get(Kind::Iban), 1);
        let two = f("4111111111111111 and 5555 5555 5555 4444", None);
        assert_eq!((two.get(Kind::Pan), two.total()), (2, 2));
        let mut sum = two;
        sum.add(&one(Kind::Email));
        assert_eq!(sum.total(), 3);
        assert_eq!(
            sum.iter().collect::<Vec<_>>(),
            vec![(Kind::Pan, 2), (Kind::Email, 1)]
        );
        assert!(Findings::default().is_empty());
        assert_eq!(Kind::Track1.as_str(), "track1");
    }

    #[test]
    fn scan_str_borrows_when_clean() {
        let s = Scanner::new(&DetectorSet::default());
        let (out, f) = s.scan_str("ERROR: duplicate key value (id)=(42)", None);
        assert!(matches!(out, Cow::Borrowed(_)));
        assert!(f.is_empty());
        let (out, f) = s.scan_str(
            "ERROR: duplicate key value (pan)=(4111111111111111) ß",
            Some("pan"),
        );
        assert_eq!(out, "ERROR: duplicate key value (pan)=(411111******1111) ß");
        assert!(matches!(out, Cow::Owned(_)));
        assert_eq!(f.get(Kind::Pan), 1);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_scanned() {
        let s = Scanner::new(&DetectorSet::default());
        let v = b"\xff\xfe4111111111111111\x80";
        let (out, f) = s.scan(v, None).expect("found");
        assert_eq!(&out, b"\xff\xfe411111******1111\x80");
        assert_eq!(f.get(Kind::Pan), 1);
    }

    #[test]
    fn pan_numbers() {
        for (s, want) in [
            ("4111111111111111", true),
            ("-4111111111111111", true),
            ("+5555555555554444", true),
            ("4222222222222", true),
            ("0004111111111111111", true),
            ("4111111111111111.00", true),
            ("1111111111111114", true), // reversed
            ("4111111111111112", false),
            ("411111111111", false),
            ("0", false),
            ("-9223372036854775808", false),
            ("9223372036854775807", false),
            ("0000000000042", false),
            ("", false),
        ] {
            assert_eq!(Scanner::is_pan_number(s), want, "{s}");
        }
    }

    #[test]
    fn luhn_check() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"79927398710"));
        assert!(!luhn(b""));
        assert!(!luhn(b"4111-1111"));
    }

    #[test]
    fn default_set_and_config() {
        let d = DetectorSet::default();
        assert!(d.cvv && !d.email && !d.ssn && !d.iban);
    }

    /// The pre-filter agrees with a byte-at-a-time reference at every
    /// offset and length, so it never hides a run from the scanner.
    #[test]
    fn prefilter_is_exact() {
        fn reference(v: &[u8]) -> bool {
            let (mut run, mut best) = (0, 0);
            let mut i = 0;
            while i < v.len() {
                if v[i].is_ascii_digit() {
                    run += 1;
                    best = best.max(run);
                } else if !(is_sep(v[i]) && i > 0 && v[i - 1].is_ascii_digit()) {
                    run = 0;
                }
                i += 1;
            }
            best >= 13
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789012345678901234567890123456789 - -a\xff\x00:";
        for _ in 0..50_000 {
            let len = (next() % 40) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            assert_eq!(has_long_run(&v), reference(&v), "{v:?}");
        }
        for pad in 0..16 {
            for n in 10..22 {
                let mut v = vec![b'x'; pad];
                v.extend(std::iter::repeat_n(b'7', n));
                assert_eq!(has_long_run(&v), n >= 13, "{pad} {n}");
            }
        }
    }

    /// Fail closed: a test PAN dropped into random noise, or into a random
    /// digit run making it longer than 19 digits, always has its middle
    /// digits masked, whatever the detectors and the column.
    #[test]
    fn embedded_pans_are_always_masked() {
        const PANS: [&str; 7] = [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "4000056655665556",
            "3056930009020004",
            "4222222222222",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let noise = b"abcXYZ%B^;=?@.,:/\\\"'{}()\xff\xc3\xa9\t\n";
        for round in 0..20_000 {
            let pan = PANS[next(PANS.len())].as_bytes();
            let set = [DEF, MIN, ALL][next(3)].clone();
            let glued = round % 2 == 1;
            let mut v = Vec::new();
            for _ in 0..next(20) {
                v.push(noise[next(noise.len())]);
            }
            let mut extra = Vec::new();
            if glued {
                // 21 digits or more in all, the first not a zero.
                let k = 21 - pan.len() + next(10);
                let before = next(k + 1);
                extra.push(b'1' + next(9) as u8);
                for _ in 1..k {
                    extra.push(b'0' + next(10) as u8);
                }
                v.extend_from_slice(&extra[..before]);
                let at = v.len();
                v.extend_from_slice(pan);
                v.extend_from_slice(&extra[before..]);
                v.push(b'x');
                check(&set, &v, at, pan.len());
            } else {
                let at = v.len();
                v.extend_from_slice(pan);
                for _ in 0..next(20) {
                    v.push(noise[next(noise.len())]);
                }
                check(&set, &v, at, pan.len());
            }
        }
        fn check(set: &DetectorSet, v: &[u8], at: usize, n: usize) {
            let col = Some("cvv_or_not");
            let (out, f) = Scanner::new(set).scan(v, col).expect("found");
            assert_eq!(out.len(), v.len());
            assert!(!f.is_empty());
            assert!(
                out[at + 6..at + n - 4].iter().all(|&b| b == b'*'),
                "{:?} -> {:?}",
                String::from_utf8_lossy(v),
                String::from_utf8_lossy(&out)
            );
        }
    }

    /// Random values over an alphabet rich in the detectors' syntax: no
    /// panic, the length kept, only ASCII replaced, and only by `*`.
    #[test]
    fn random_values_are_safe() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let alphabet =
            "0123456789012345678901234567890123456789  --=;^%B?@.ABGDEWXYZ abcé".as_bytes();
        let scanners = [DEF, MIN, ALL].map(|s| Scanner::new(&s));
        for _ in 0..30_000 {
            let v: Vec<u8> = (0..next(90))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let col = [None, Some("cvv"), Some("name")][next(3)];
            for s in &scanners {
                if let Some((out, f)) = s.scan(&v, col) {
                    assert!(!f.is_empty());
                    assert_eq!(out.len(), v.len());
                    for (a, b) in v.iter().zip(&out) {
                        assert!(a == b || (*b == b'*' && a.is_ascii()), "{v:?}");
                    }
                }
            }
            let _ = Scanner::is_pan_number(&String::from_utf8_lossy(&v));
        }
    }

    /// Long values: the pre-filters' counters do not wrap.
    #[test]
    fn long_values() {
        let s = Scanner::new(&ALL);
        for filler in [250, 256, 300, 1000, 2039, 2040, 5000] {
            let mut v = "7 ".repeat(filler / 2).into_bytes();
            v.extend_from_slice(b"x 123-45-6789 GB82WEST12345698765432 a.b@c.de 4111111111111111");
            let (out, f) = s.scan(&v, None).expect("found");
            let tail = &out[v.len() - 60..];
            assert_eq!(
                tail, b"***-**-6789 GB82**************5432 a**@c.de 411111******1111",
                "{filler}"
            );
            assert_eq!(f.get(Kind::Ssn), 1);
            assert_eq!(f.get(Kind::Iban), 1);
            assert_eq!(f.get(Kind::Email), 1);
        }
    }

    #[test]
    fn deserialize_rejects_unknown_fields() {
        // serde_json is not a dependency: serde's own map deserializer.
        use serde::de::value::{Error, MapDeserializer};
        let de = |k: &'static str| MapDeserializer::<_, Error>::new(std::iter::once((k, true)));
        let d = DetectorSet::deserialize(de("email")).expect("valid");
        assert_eq!(
            d,
            DetectorSet {
                email: true,
                ..DetectorSet::default()
            }
        );
        assert!(DetectorSet::deserialize(de("emial")).is_err());
    }

    /// Found by the detect fuzz target: masking one span of a grouped run
    /// cut a group, and the masked value then held a 13-digit span of
    /// whole groups passing Luhn that a second scan reported. Masking is
    /// now final: nothing the detectors report is left.
    #[test]
    fn masking_leaves_nothing_a_second_scan_finds() {
        let s = Scanner::new(&MIN);
        for value in [
            &b"7888888-78777888888-77\xfd7"[..],
            b"7888888-78777888888-77",
            b"id 7888888-78777888888-77 ok",
        ] {
            let (out, f) = s.scan(value, None).expect("found");
            assert_eq!(f.get(Kind::Pan), 1, "{:?}", String::from_utf8_lossy(value));
            assert_eq!(out.len(), value.len());
            assert!(
                s.scan(&out, None).is_none(),
                "{:?} masked to {:?} still holds a PAN",
                String::from_utf8_lossy(value),
                String::from_utf8_lossy(&out)
            );
        }
    }
}
