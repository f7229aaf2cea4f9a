//! The MySQL codec's cost on the paths a proxy runs for every packet.
//!
//! - `decode_result`: a 1,000-row text result set (column count, five
//!   column definitions, EOF, rows of five typical values, EOF) split into
//!   packets with `packet::decode`, the definitions parsed and every row
//!   split into its values with `text_row` (borrowed, no copy), as the
//!   MySQL proxy does when it inspects a result.
//! - `encode_text_row`: one five-value text row encoded and framed into a
//!   reused buffer (what a masked row's replacement costs).
//! - `decode_queries`: 1,000 `COM_QUERY` packets (sysbench point selects)
//!   framed and parsed as commands.
//!
//! The result and row benches report bytes of wire data per second; the
//! query bench reports packets per second.
// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_mywire::{
    Command,
    command::query_payload,
    packet::{self, DEFAULT_MAX_PAYLOAD},
    response::{self, ColumnDef, EofPacket, types},
};
use std::hint::black_box;

/// Rows in the result bench, and queries in the query bench.
const ROWS: usize = 1000;
/// Columns of every row.
const COLUMNS: usize = 5;

/// A small deterministic generator (xorshift64), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const NAMES: &[&str] = &[
    "Alice Johnson",
    "Bob O'Neil-Smith",
    "Chloé Müller",
    "Hiroshi Nakamura",
];

/// One row of typical text values: id, name, email, amount, timestamp.
fn row(r: &mut Rng, i: usize) -> Vec<Option<Vec<u8>>> {
    let name = NAMES[r.below(NAMES.len() as u64) as usize];
    vec![
        Some(format!("{}", 100_000 + i).into_bytes()),
        Some(name.as_bytes().to_vec()),
        Some(format!("customer{}@example.com", r.below(100_000)).into_bytes()),
        // One NULL in eight, as optional columns have.
        (r.below(8) != 0).then(|| format!("{}.{:02}", r.below(100_000), r.below(100)).into_bytes()),
        Some(
            format!(
                "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
                1 + r.below(12),
                1 + r.below(28),
                r.below(24),
                r.below(60),
                r.below(60),
                r.below(1_000_000)
            )
            .into_bytes(),
        ),
    ]
}

fn def(name: &str, column_type: u8) -> ColumnDef {
    ColumnDef {
        catalog: b"def".to_vec(),
        schema: b"shop".to_vec(),
        table: b"customers".to_vec(),
        org_table: b"customers".to_vec(),
        name: name.as_bytes().to_vec(),
        org_name: name.as_bytes().to_vec(),
        charset: 45,
        length: 255,
        column_type,
        flags: 0,
        decimals: 0,
    }
}

fn borrowed(values: &[Option<Vec<u8>>]) -> Vec<Option<&[u8]>> {
    values.iter().map(|v| v.as_deref()).collect()
}

/// A whole text result set, without `DEPRECATE_EOF`.
fn result_stream() -> BytesMut {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = BytesMut::new();
    let mut seq = packet::encode(1, &response::encode_column_count(COLUMNS as u64), &mut out);
    for (name, t) in [
        ("id", types::LONG),
        ("name", types::VAR_STRING),
        ("email", types::VAR_STRING),
        ("balance", types::NEWDECIMAL),
        ("updated_at", types::DATETIME),
    ] {
        seq = packet::encode(seq, &def(name, t).encode(), &mut out);
    }
    let eof = EofPacket {
        warnings: 0,
        status: 0x0002,
    }
    .encode();
    seq = packet::encode(seq, &eof, &mut out);
    for i in 0..ROWS {
        let values = row(&mut r, i);
        seq = packet::encode(
            seq,
            &response::encode_text_row(&borrowed(&values)),
            &mut out,
        );
    }
    packet::encode(seq, &eof, &mut out);
    out
}

/// 1,000 `COM_QUERY` packets, each a sysbench point select.
fn query_stream() -> BytesMut {
    let mut out = BytesMut::new();
    for i in 0..ROWS {
        let sql = format!("SELECT c FROM sbtest1 WHERE id={}", 1 + i * 9973 % 100_000);
        packet::encode(0, &query_payload(sql.as_bytes()), &mut out);
    }
    out
}

/// Walk a result set as the proxy does. Returns the values seen.
fn decode_result(mut buf: BytesMut) -> usize {
    let mut next = || {
        packet::decode(&mut buf, DEFAULT_MAX_PAYLOAD)
            .expect("valid stream")
            .expect("complete packet")
    };
    let columns = response::column_count(&next().payload).expect("column count") as usize;
    let defs: Vec<ColumnDef> = (0..columns)
        .map(|_| ColumnDef::parse(&next().payload).expect("column definition"))
        .collect();
    EofPacket::parse(&next().payload).expect("EOF after the definitions");
    let mut values = 0;
    loop {
        let p = next();
        if response::is_eof(&p.payload) {
            break;
        }
        values += response::text_row(&p.payload, defs.len())
            .expect("valid row")
            .len();
    }
    values
}

fn bench(c: &mut Criterion) {
    let result = result_stream();
    let values = decode_result(result.clone());
    assert_eq!(values, ROWS * COLUMNS, "the result decodes as built");
    eprintln!(
        "result: {} bytes, {values} values, {:.1} bytes/row packet",
        result.len(),
        result.len() as f64 / ROWS as f64
    );
    let queries = query_stream();

    let mut g = c.benchmark_group("mywire");
    g.throughput(Throughput::Bytes(result.len() as u64));
    g.bench_function("decode_result", |b| {
        b.iter_batched(|| result.clone(), decode_result, BatchSize::LargeInput)
    });

    let mut r = Rng(7);
    let owned = row(&mut r, 1);
    let values = borrowed(&owned);
    let mut out = BytesMut::with_capacity(1024);
    packet::encode(3, &response::encode_text_row(&values), &mut out);
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("encode_text_row", |b| {
        b.iter(|| {
            out.clear();
            let payload = response::encode_text_row(black_box(&values));
            packet::encode(3, &payload, &mut out);
            black_box(&out[..]).len()
        })
    });

    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("decode_queries", |b| {
        b.iter_batched(
            || queries.clone(),
            |mut buf| {
                let mut n = 0usize;
                while let Some(p) =
                    packet::decode(&mut buf, DEFAULT_MAX_PAYLOAD).expect("valid stream")
                {
                    let Command::Query(sql) = Command::parse(&p.payload).expect("valid command")
                    else {
                        panic!("not a COM_QUERY");
                    };
                    black_box(sql);
                    n += 1;
                }
                assert_eq!(n, ROWS);
                n
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
