//! Throughput of the content detectors over typical result-row values.
//!
//! - `no_hits`: 1 MiB of values of about 30 bytes (names, emails, dates,
//!   timestamps, amounts, UUIDs, phones, addresses, product names, JSON)
//!   with the default detectors (PAN, track data, CVV); nothing is found
//!   (the hits printed before each run say so).
//! - `one_percent_pans`: the same with one value in a hundred holding a PAN.
//! - `all_detectors`: the `no_hits` values with email, SSN and IBAN on too
//!   (emails are then hits: this one measures the opt-in detectors' cost).
//!
//! Values sit back to back in one buffer, as they do in a `DataRow`
//! message, and are scanned one by one with their column's name.
//! Throughput is reported in bytes of values per second.
//!
//! - `datarow_stream`: the `no_hits` values as the wire carries them, five
//!   to a DataRow message, and the whole of what the proxy does to find
//!   them: frame headers (`peek_tagged`), each row's values split off
//!   (`data_row_values`), each value scanned with the default detectors.
//!   Throughput here is bytes of wire data (headers and lengths included).
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_pgwire::{FrameReader, backend::data_row_values};
use sluice_policy::detect::{DetectorSet, Scanner};
use std::hint::black_box;

/// A small deterministic generator (xorshift64), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Alice",
    "Bob",
    "Chloé",
    "Dmitri",
    "Emma",
    "François",
    "Grace",
    "Hiroshi",
    "Ines",
];
const LAST: &[&str] = &[
    "Johnson",
    "O'Neil-Smith",
    "Müller",
    "Nakamura",
    "Okafor",
    "Lindqvist",
    "García",
];
const STREETS: &[&str] = &["Elm Street", "Rue de la Paix", "Hauptstraße", "Market St"];
const CITIES: &[&str] = &["Springfield", "Paris", "München", "Osaka", "Lagos"];
const PRODUCTS: &[&str] = &[
    "Stainless steel water bottle",
    "Organic cotton T-shirt, navy",
    "Wireless mouse (2.4 GHz)",
    "Espresso beans, dark roast",
];

/// One typical value and its column's name.
fn value(r: &mut Rng) -> (Vec<u8>, &'static str) {
    let s = match r.below(10) {
        0 => (
            format!(
                "{} {}. {} (#{})",
                r.pick(FIRST),
                (b'A' + r.below(26) as u8) as char,
                r.pick(LAST),
                r.below(1000)
            ),
            "customer_name",
        ),
        1 => (
            format!(
                "{}.{}{}@example.com",
                r.pick(FIRST).to_lowercase(),
                r.pick(LAST).to_lowercase(),
                r.below(100)
            ),
            "email",
        ),
        2 => (
            format!(
                "{}, {} ml, {:04}-{:02}-{:02}",
                r.pick(PRODUCTS),
                250 * (1 + r.below(4)),
                2000 + r.below(26),
                1 + r.below(12),
                1 + r.below(28)
            ),
            "product",
        ),
        3 => (
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
                2000 + r.below(26),
                1 + r.below(12),
                1 + r.below(28),
                r.below(24),
                r.below(60),
                r.below(60),
                r.below(1_000_000)
            ),
            "updated_at",
        ),
        4 => (
            format!(
                "{} {}.{:02} ({})",
                ["EUR", "USD", "JPY"][r.below(3) as usize],
                r.below(1_000_000),
                r.below(100),
                r.below(10_000)
            ),
            "amount",
        ),
        5 => {
            let (a, b) = (r.next(), r.next());
            (
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    0x8000 | (b >> 48) & 0x3fff,
                    b & 0xffff_ffff_ffff
                ),
                "id",
            )
        }
        6 => (
            format!(
                "+1 {:03}-{:03}-{:04} ext. {}",
                200 + r.below(800),
                r.below(1000),
                r.below(10_000),
                r.below(1000)
            ),
            "phone",
        ),
        7 => (
            format!(
                "{} {}, {}",
                1 + r.below(9999),
                r.pick(STREETS),
                r.pick(CITIES)
            ),
            "address",
        ),
        8 => (
            format!(
                r#"{{"sku":"AB-{}","qty":{},"price":{}.{:02}}}"#,
                r.below(100_000),
                r.below(100),
                r.below(1000),
                r.below(100)
            ),
            "line",
        ),
        _ => (
            format!("order {} shipped to {}", r.below(1_000_000), r.pick(CITIES)),
            "note",
        ),
    };
    (s.0.into_bytes(), s.1)
}

/// About 1 MiB of values back to back, with their ranges and columns;
/// every `pan_every`th one holds a PAN.
struct Rows {
    buf: Vec<u8>,
    values: Vec<(usize, usize, &'static str)>,
}

impl Rows {
    fn new(pan_every: Option<usize>) -> Rows {
        const PANS: &[&str] = &[
            "4111111111111111",
            "card 5555 5555 5555 4444 ok",
            "378282246310005",
            "ref 6011-1111-1111-1117",
        ];
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = Vec::with_capacity(1 << 20);
        let mut values = Vec::new();
        while buf.len() < 1 << 20 {
            let n = values.len();
            let (v, col) = match pan_every {
                Some(k) if n % k == k - 1 => (PANS[n / k % PANS.len()].as_bytes().to_vec(), "note"),
                _ => value(&mut r),
            };
            values.push((buf.len(), buf.len() + v.len(), col));
            buf.extend_from_slice(&v);
        }
        Rows { buf, values }
    }

    /// The values as a stream of DataRow messages of `per_row` values,
    /// with each row's column names.
    fn data_rows(&self, per_row: usize) -> (Vec<u8>, Vec<Vec<&'static str>>) {
        let mut wire = Vec::with_capacity(self.buf.len() * 2);
        let mut columns = Vec::new();
        for row in self.values.chunks(per_row) {
            let len = 4 + 2 + row.iter().map(|&(a, b, _)| 4 + b - a).sum::<usize>();
            wire.push(b'D');
            wire.extend_from_slice(&(len as i32).to_be_bytes());
            wire.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for &(a, b, _) in row {
                wire.extend_from_slice(&((b - a) as i32).to_be_bytes());
                wire.extend_from_slice(&self.buf[a..b]);
            }
            columns.push(row.iter().map(|&(_, _, col)| col).collect());
        }
        (wire, columns)
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &str)> + '_ {
        self.values
            .iter()
            .map(|&(a, b, col)| (&self.buf[a..b], col))
    }
}

fn bench(c: &mut Criterion) {
    let default = Scanner::new(&DetectorSet::default());
    let all = Scanner::new(&DetectorSet {
        cvv: true,
        email: true,
        ssn: true,
        iban: true,
    });
    let mut g = c.benchmark_group("scan");
    // An iteration takes about a millisecond: 50 samples fit the default
    // measurement window of the micro suite.
    g.sample_size(50);
    for (name, scanner, pan_every) in [
        ("no_hits", &default, None),
        ("one_percent_pans", &default, Some(100)),
        ("all_detectors", &all, None),
    ] {
        let rows = Rows::new(pan_every);
        let bytes = rows.buf.len() as u64;
        let hits = rows
            .iter()
            .filter(|&(v, col)| scanner.scan(v, Some(col)).is_some())
            .count();
        eprintln!(
            "{name}: {} values, {bytes} bytes, {:.1} bytes/value, {hits} hits",
            rows.values.len(),
            bytes as f64 / rows.values.len() as f64
        );
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut hits = 0usize;
                for (v, col) in rows.iter() {
                    if scanner.scan(black_box(v), Some(col)).is_some() {
                        hits += 1;
                    }
                }
                hits
            })
        });
    }

    // The proxy's walk over a result: frames, values, detectors.
    let rows = Rows::new(None);
    let (wire, columns) = rows.data_rows(5);
    let reader = FrameReader::default();
    let walk = |wire: &[u8]| {
        let (mut pos, mut row, mut hits) = (0, 0, 0usize);
        while let Some((_, total)) = reader.peek_tagged(&wire[pos..]).expect("valid stream") {
            let values = data_row_values(&wire[pos + 5..pos + total]).expect("valid DataRow");
            for (v, col) in values.iter().zip(&columns[row]) {
                if let Some(v) = v
                    && default.scan(v, Some(col)).is_some()
                {
                    hits += 1;
                }
            }
            row += 1;
            pos += total;
        }
        (row, hits)
    };
    let (n, hits) = walk(&wire);
    assert_eq!(n, columns.len(), "every DataRow walked");
    eprintln!(
        "datarow_stream: {n} DataRows, {} bytes on the wire ({} of values), {hits} hits",
        wire.len(),
        rows.buf.len()
    );
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("datarow_stream", |b| b.iter(|| walk(black_box(&wire))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
