//! The PostgreSQL codec's cost on the paths a proxy runs for every message.
//!
//! - `scan_result`: a 1,000-row result (RowDescription, DataRows of five
//!   typical values, CommandComplete, ReadyForQuery) walked the way the
//!   inspecting pipeline walks its read buffer: `peek_tagged` on every
//!   frame, and `data_row_values` (borrowed, no copy) on every DataRow.
//! - `decode_result`: the same bytes split with `next_tagged` and decoded
//!   into owned `BackendMessage`s (what a message-at-a-time consumer pays).
//! - `encode_data_row`: one five-value DataRow written into a reused buffer
//!   (what a masked row's replacement costs to put on the wire).
//! - `decode_queries`: 1,000 simple-protocol Query messages (pgbench -S
//!   statements) split and decoded as `FrontendMessage`s.
//!
//! The result benches report bytes of wire data per second; the query bench
//! reports messages per second.
// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_pgwire::{
    BackendMessage, FrameReader, FrontendMessage,
    backend::{FieldDescription, data_row_values},
    wire::{put_list16, put_message, put_value},
};
use std::hint::black_box;

/// Rows in the result benches.
const ROWS: usize = 1000;

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
                "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
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

fn field(name: &str, column: i16, type_oid: u32) -> FieldDescription {
    FieldDescription {
        name: name.into(),
        table_oid: 16_384,
        column,
        type_oid,
        type_size: -1,
        type_modifier: -1,
        format: 0,
    }
}

/// A whole simple-protocol answer: RowDescription, the rows,
/// CommandComplete, ReadyForQuery.
fn result_stream() -> BytesMut {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = BytesMut::new();
    BackendMessage::RowDescription(vec![
        field("id", 1, 23),
        field("name", 2, 25),
        field("email", 3, 25),
        field("balance", 4, 1700),
        field("updated_at", 5, 1184),
    ])
    .encode(&mut out);
    for i in 0..ROWS {
        let values = row(&mut r, i);
        put_message(&mut out, b'D', |b| {
            put_list16(b, &values, |b, v| put_value(b, v.as_deref()));
        });
    }
    BackendMessage::CommandComplete(format!("SELECT {ROWS}")).encode(&mut out);
    BackendMessage::ReadyForQuery(b'I').encode(&mut out);
    out
}

/// 1,000 Query messages, each a pgbench -S statement.
fn query_stream() -> BytesMut {
    let mut out = BytesMut::new();
    for aid in 0..ROWS {
        FrontendMessage::Query(format!(
            "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
            1 + aid * 9973 % 100_000
        ))
        .encode(&mut out);
    }
    out
}

/// The inspecting pipeline's walk: frame headers, then the values of each
/// DataRow borrowed from the buffer. Returns (frames, values) so the work
/// cannot be optimised away.
fn scan(reader: FrameReader, buf: &[u8]) -> (usize, usize) {
    let (mut pos, mut frames, mut values) = (0, 0, 0);
    while let Some((tag, total)) = reader.peek_tagged(&buf[pos..]).expect("valid stream") {
        if tag == b'D' {
            values += data_row_values(&buf[pos + 5..pos + total])
                .expect("valid DataRow")
                .len();
        }
        frames += 1;
        pos += total;
    }
    (frames, values)
}

fn bench(c: &mut Criterion) {
    let reader = FrameReader::default();
    let result = result_stream();
    let (frames, values) = scan(reader, &result);
    assert_eq!(frames, ROWS + 3, "the result stream frames as built");
    eprintln!(
        "result: {} bytes, {frames} frames, {values} values, {:.1} bytes/DataRow",
        result.len(),
        result.len() as f64 / ROWS as f64
    );
    let queries = query_stream();

    let mut g = c.benchmark_group("pgwire");
    g.throughput(Throughput::Bytes(result.len() as u64));
    g.bench_function("scan_result", |b| {
        b.iter(|| scan(reader, black_box(&result)))
    });
    g.bench_function("decode_result", |b| {
        b.iter_batched(
            || result.clone(),
            |mut buf| {
                let mut n = 0usize;
                while let Some(frame) = reader.next_tagged(&mut buf).expect("valid stream") {
                    black_box(BackendMessage::decode(frame).expect("valid message"));
                    n += 1;
                }
                n
            },
            BatchSize::LargeInput,
        )
    });

    let mut r = Rng(7);
    let values = row(&mut r, 1);
    let mut out = BytesMut::with_capacity(1024);
    put_message(&mut out, b'D', |b| {
        put_list16(b, &values, |b, v| put_value(b, v.as_deref()));
    });
    g.throughput(Throughput::Bytes(out.len() as u64));
    g.bench_function("encode_data_row", |b| {
        b.iter(|| {
            out.clear();
            put_message(&mut out, b'D', |b| {
                put_list16(b, black_box(&values), |b, v| put_value(b, v.as_deref()));
            });
            black_box(&out[..]).len()
        })
    });

    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("decode_queries", |b| {
        b.iter_batched(
            || queries.clone(),
            |mut buf| {
                let mut n = 0usize;
                while let Some(frame) = reader.next_tagged(&mut buf).expect("valid stream") {
                    black_box(FrontendMessage::decode(frame).expect("valid message"));
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
