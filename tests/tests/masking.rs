//! Policy and masking through the real gateway: a cardholder table with
//! Luhn-valid test PANs, unmodified psql and tokio-postgres (binary
//! results), and a bypass suite drawn from the known classes (casts,
//! concatenation, encodings, reversing, pieces, aggregates, constructors,
//! UNION/subquery/CTE aliasing, PREPARE, cursors, COPY, error messages,
//! notices, notifications, CTAS, views, WHERE oracles, comments, quoting,
//! multi-statement strings, search_path).
//!
//! Pass means: no known PAN — and no reversed, hex or base64 form of one,
//! and no other Luhn-valid digit run — reaches the client, whether sluice
//! refused the attempt or masked its result; and every attempt is in the
//! audit record with its decision.
use std::time::Duration;

use sluice_lab::{
    daemon::store_dir,
    leaks::leak,
    packets::in_netns,
    postgres::{PASSWORD, USER, conninfo},
    require_privileged,
    scenario::{self, Custom, GatewayRun},
};

/// The PANs in the lab's tables (digits only).
const PANS: &[&str] = &[
    "4111111111111111",
    "5500005555555559",
    "4012888888881881",
    "378282246310005",
];

const POLICY: &str = r#"
[policy]
default = "deny"

[[policy.rules]]
name = "agents"
action = "allow"
classes = ["read", "write", "transaction", "utility"]

[[policy.rules]]
name = "no bulk delete"
action = "deny"
without_where = true

[masking]
laundering = "mask"
probing = "deny"
stored = "deny"

[[masking.columns]]
table = "cards"
column = "pan"
format = "pci"

[[masking.columns]]
table = "cards"
column = "holder"
format = "redact"

[[masking.columns]]
table = "wallet"
column = "pan_num"
format = "pci"

[[masking.columns]]
table = "wallet"
column = "pan_spaced"
format = "pci"
"#;

fn setup(tag: &str, index: u8) -> GatewayRun {
    scenario::start_custom(tag, index, |p| {
        p.pg.sql(
            "CREATE TABLE wallet (id int primary key, owner text, pan_num bigint, pan_spaced text, note text);
             INSERT INTO wallet VALUES (1, 'Grace Hopper', 4012888888881881, '3782 822463 10005', 'card 4111-1111-1111-1111 on file');
             CREATE SCHEMA other;
             CREATE TABLE other.cards AS SELECT * FROM public.cards;",
        );
        p.pg.sql(&format!(
            "GRANT SELECT ON wallet TO {USER}; GRANT USAGE ON SCHEMA other TO {USER}; GRANT SELECT ON other.cards TO {USER}; GRANT CREATE ON SCHEMA public TO {USER}"
        ));
        Custom {
            sections: POLICY.into(),
            ..Custom::default()
        }
    })
}

fn psql(s: &GatewayRun, sql: &str) -> String {
    let info = conninfo(&s.lab.db_ip, 5432);
    let out = s.lab.agent.try_run(
        &[
            "psql",
            "-X",
            "-A",
            "-v",
            "ON_ERROR_STOP=0",
            info.as_str(),
            "-c",
            sql,
        ],
        Duration::from_secs(30),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The bypass attempts, one per line, through psql (simple protocol).
const ATTEMPTS: &[&str] = &[
    // Plain reads and casts.
    "select pan from cards",
    "select id, holder, pan from cards",
    "select * from cards",
    "select c.* from cards c",
    "table cards",
    "select pan::text from cards",
    "select cast(pan as varchar(40)) from cards",
    "select pan::bigint from cards",
    "select pan::numeric from cards",
    "select pan collate \"C\" from cards",
    "select (pan) from cards",
    "select pan_num from wallet",
    "select pan_num::text from wallet",
    "select pan_spaced from wallet",
    "select note from wallet",
    "select * from wallet",
    // Concatenation and functions.
    "select concat(pan) from cards",
    "select concat('x', pan) as x from cards",
    "select pan || '' from cards",
    "select '' || pan as p from cards",
    "select lower(pan) from cards",
    "select upper(pan) from cards",
    "select format('%s', pan) from cards",
    "select trim(pan) from cards",
    "select lpad(pan, 20, '0') from cards",
    "select translate(pan, '0123456789', 'abcdefghij') from cards",
    "select regexp_replace(pan, '(.)', '\\1 ', 'g') from cards",
    "select replace(pan, '1', '1') from cards",
    // Encodings and reversing.
    "select reverse(pan) from cards",
    "select encode(pan::bytea, 'hex') from cards",
    "select encode(convert_to(pan, 'UTF8'), 'base64') from cards",
    "select encode(pan::bytea, 'escape') from cards",
    "select to_hex(pan::bigint) from cards",
    "select to_hex(pan_num) from wallet",
    "select pan::bytea from cards",
    "select md5(pan) from cards",
    // Pieces across columns.
    "select substr(pan, 1, 8), substr(pan, 9, 8) from cards",
    "select substring(pan from 1 for 8) as a, substring(pan from 9) as b from cards",
    "select left(pan, 8), right(pan, 8) from cards",
    "select split_part(pan, '1', 1) from cards",
    // Aggregates and constructors.
    "select string_agg(pan, ',') from cards",
    "select max(pan), min(pan) from cards",
    "select array_agg(pan) from cards",
    "select json_agg(pan) from cards",
    "select json_agg(c) from cards c",
    "select row_to_json(c) from cards c",
    "select to_json(c.*) from cards c",
    "select row(pan) from cards",
    "select array[pan] from cards",
    "select jsonb_build_object('p', pan) from cards",
    "select c from cards c",
    "select cards from cards",
    "select (c).pan from cards c",
    "select unnest(array[pan]) from cards",
    // UNION, subqueries, CTEs.
    "select pan from cards union select 'x'",
    "select 'x' union select pan from cards",
    "select id::text from cards union all select pan from cards",
    "select p from (select pan as p from cards) s",
    "select x.pan from (select * from cards) x",
    "select * from (select pan as q from cards) s",
    "with c as (select pan from cards) select * from c",
    "with c(z) as (select pan from cards) select z from c",
    "select (select pan from cards limit 1)",
    "select (select pan from cards limit 1) as p",
    "values ((select pan from cards limit 1))",
    "select case when id > 0 then pan end from cards",
    "select coalesce(pan, 'x') from cards",
    "select greatest(pan, '') from cards",
    // PREPARE/EXECUTE and cursors.
    "prepare s1 as select pan from cards; execute s1",
    "prepare s2 as select reverse(pan) as r from cards; execute s2",
    "prepare s3 as delete from cards; execute s3",
    "begin; declare c1 cursor for select pan from cards; fetch all from c1; commit",
    "begin; declare c2 cursor for select * from cards; fetch all from c2; commit",
    // COPY.
    "copy cards to stdout",
    "copy cards to stdout with (format csv)",
    "copy cards to stdout with (format binary)",
    "copy (select pan from cards) to stdout",
    "copy (select reverse(pan) from cards) to stdout",
    "copy (select note from wallet) to stdout",
    // Error messages, notices, notifications.
    "select pan::int from cards",
    "select pan::date from cards",
    "select 1 / (pan::bigint - pan::bigint) from cards",
    "do $$ begin raise notice '%', (select pan from cards limit 1); end $$",
    "select pg_notify('ch', pan) from cards",
    "listen ch; select pg_notify('ch', reverse(pan)) from cards",
    "select set_config('my.v', pan, false) from cards",
    "select query_to_xml('select pan from cards', true, false, '')",
    "select table_to_xml('cards', true, false, '')",
    // CTAS, INSERT…SELECT, views, functions.
    "create table stolen as select pan from cards",
    "select pan into stolen2 from cards",
    "create view v as select pan from cards",
    "create function f() returns text language sql as $$ select pan from cards limit 1 $$",
    "create temp table t1 (p text); insert into t1 select pan from cards",
    // WHERE-clause oracles.
    "select id from cards where pan like '4111%'",
    "select count(*) from cards where pan > '4'",
    "select id from cards where substr(pan, 1, 1) = '4'",
    "select id from cards order by pan",
    "select id, pan from cards order by 2",
    "select pan from cards where id = 1 union select pan from cards where id = 2 order by 1",
    "select id from cards c join wallet w on w.pan_spaced = c.pan",
    "select 1 where exists (select 1 from cards where pan = '4111111111111111')",
    // Comments, quoting, dollar quotes, multi-statement, search_path.
    "select /* hi */ pan -- there\n from cards",
    "select \"pan\" from \"cards\"",
    "select PAN from CARDS",
    "select public.cards.pan from public.cards",
    "select U&\"p\\0061n\" from cards",
    "select $$x$$, pan from cards",
    "select 'a\\' , pan from cards --'",
    "select 1; select pan from cards",
    "select 1; delete from cards",
    "set search_path = other, public; select pan from cards",
    "select pan from other.cards",
    "selec pan from cards",
];

#[test]
fn bypass_suite_leaks_no_pan_and_records_every_attempt() {
    if !require_privileged("bypass_suite") {
        return;
    }
    let s = setup("m1", 31);
    let mut leaks = Vec::new();
    let mut refused = 0;
    let mut masked = 0;
    for sql in ATTEMPTS {
        let out = psql(&s, sql);
        if let Some(l) = leak(&out, PANS) {
            leaks.push(format!("{sql}\n  → {l}\n  {}", out.replace('\n', "\n  ")));
        }
        if out.contains("refused by policy") {
            refused += 1;
        }
        if out.contains("******") || out.contains("****") {
            masked += 1;
        }
    }
    assert!(
        leaks.is_empty(),
        "{} of {} attempts leaked:\n{}",
        leaks.len(),
        ATTEMPTS.len(),
        leaks.join("\n")
    );
    // Both defences were exercised.
    assert!(
        refused >= 20 && masked >= 20,
        "refused {refused}, masked {masked}"
    );

    // Masking shows what it should, not just nothing.
    let out = psql(&s, "select id, holder, pan from cards order by id");
    assert!(out.contains("1|****|411111******1111"), "{out}");
    let out = psql(&s, "select pan_num, pan_spaced, note from wallet");
    assert!(
        out.contains("|3782 82**** *0005|card 4111-11**-****-1111 on file"),
        "{out}"
    );
    // Computed from a redacted column: an integer cannot carry a mask, so
    // it is NULL.
    let out = psql(
        &s,
        "select id, length(holder) from cards order by id limit 1",
    );
    assert!(out.lines().any(|l| l == "1|"), "{out}");

    // Extended protocol, binary results (tokio-postgres asks for binary).
    let conn = format!(
        "host={} port=5432 user={USER} password={PASSWORD} dbname=postgres",
        s.lab.db_ip
    );
    let rows = in_netns(&s.lab.agent.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let mut seen = Vec::new();
            let r = client
                .query("select pan from cards where id = $1", &[&1i32])
                .await
                .unwrap();
            seen.push(format!("text:{}", r[0].get::<_, String>(0)));
            let r = client
                .query("select pan::bigint as n from cards where id = $1", &[&1i32])
                .await
                .unwrap();
            seen.push(format!("int8:{:?}", r[0].get::<_, Option<i64>>(0)));
            let r = client
                .query("select pan_num from wallet", &[])
                .await
                .unwrap();
            seen.push(format!("int8:{:?}", r[0].get::<_, Option<i64>>(0)));
            let r = client.query("select note from wallet", &[]).await.unwrap();
            seen.push(format!("text:{}", r[0].get::<_, String>(0)));
            let e = client
                .query(
                    "select id from cards where pan = $1",
                    &[&"4111111111111111"],
                )
                .await;
            seen.push(format!(
                "probe:{}",
                e.map(|_| "allowed".to_string())
                    .unwrap_or_else(|e| e.to_string())
            ));
            seen
        })
    });
    let joined = rows.join("\n");
    assert!(
        leak(&joined, PANS).is_none(),
        "binary results leaked: {joined}"
    );
    assert_eq!(rows[0], "text:411111******1111", "{joined}");
    assert_eq!(rows[1], "int8:None", "{joined}");
    assert_eq!(rows[2], "int8:None", "{joined}");
    assert!(rows[3].contains("4111-11**-****-1111"), "{joined}");
    assert!(
        rows[4].contains("refused") || rows[4].contains("db error"),
        "{joined}"
    );

    // Every attempt is in the record, with its decision.
    let store = store_dir(&s.scratch.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let export = loop {
        let out = s
            .daemon
            .cli(&["audit", "export", "--store", store.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let statements = text.lines().filter(|l| l.contains("\"statement\"")).count();
        if statements >= ATTEMPTS.len() || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let statements: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("\"statement\""))
        .collect();
    assert!(
        statements.len() >= ATTEMPTS.len(),
        "{} statement events for {} attempts",
        statements.len(),
        ATTEMPTS.len()
    );
    let denied = statements.iter().filter(|l| l.contains("\"deny\"")).count();
    assert!(
        denied >= refused,
        "{denied} recorded refusals, {refused} seen"
    );
    // Masking counts are recorded with each result.
    assert!(
        export.contains("\"masked\":[[\"pan\",2]]"),
        "no masking count for `select pan from cards`"
    );
    // (Timestamps are 16-digit runs: only the known PANs are looked for.)
    for pan in PANS {
        assert!(!export.contains(pan), "the record holds {pan}");
    }
}

/// `[[policy.row_limits]]`: a result bigger than the limit ends the session
/// with SQLSTATE 54000 and a clear message; smaller ones pass; the record
/// says why the session ended.
#[test]
fn row_limits_end_sessions_that_read_too_much() {
    if !require_privileged("row_limits") {
        return;
    }
    let s = scenario::start_custom("m2", 32, |_| Custom {
        sections: "[policy]\ndefault = \"allow\"\n\n[[policy.row_limits]]\nmax_rows = 1\n".into(),
        ..Custom::default()
    });
    let out = psql(&s, "select id from cards order by id limit 1");
    assert!(
        out.contains("\n1\n") && !out.contains("ERROR") && !out.contains("FATAL"),
        "{out}"
    );
    let out = psql(&s, "select id from cards order by id");
    assert!(
        out.contains("row limit exceeded") && out.contains("at most 1 rows"),
        "{out}"
    );
    assert!(
        !out.contains("\n2\n"),
        "the row past the limit reached the client: {out}"
    );
    let store = store_dir(&s.scratch.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let out = s.daemon.cli(&[
            "audit",
            "list",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("ended by policy: row limit exceeded") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session ended by the limit:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
