//! The rewrite hook with real clients. The session engine runs in-process
//! (`sluice_pgproxy::serve` on a listener inside a network namespace) in
//! front of a real PostgreSQL 15, with a policy whose rewriter records what
//! it is given and visibly rewrites it: text values of columns named
//! `holder` (and binary ones of type text) are uppercased, text COPY data
//! too, notices and errors get a mark, notifications a new payload, and
//! notifications on channel `quiet` are withheld. psql, pgbench (libpq's
//! extended protocol) and tokio-postgres (extended protocol, binary
//! results, prepared statements, portals, COPY) connect to it.
use std::{
    borrow::Cow,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sluice_lab::{
    Scratch,
    netns::Netns,
    packets::in_netns,
    postgres::{PASSWORD, Postgres, USER, conninfo},
    require_privileged,
};
use sluice_pgproxy::{
    CancelRegistry, Column, CopyFormat, Decision, Format, Notification, PatternPolicy, Policy,
    Rewrite, RewriteOrDrop, Rewriter, Route, SessionConfig, SessionInfo, SessionPolicy, Statement,
    TargetAuth, TargetSettings, UpstreamTls, Value, Workload,
};

const TEXT: u32 = 25;
const INT4: u32 = 23;

/// What the rewriter was given, in order.
#[derive(Debug, Clone)]
enum Seen {
    Row {
        columns: Option<Vec<Column>>,
        values: Vec<Option<Vec<u8>>>,
    },
    Copy {
        format: Option<CopyFormat>,
    },
    Notice(String),
    Notification {
        channel: String,
        payload: String,
    },
    Error {
        sqlstate: String,
        message: String,
    },
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Refuses `DROP TABLE`; gives every session a [`Recorder`].
struct TestPolicy {
    deny: PatternPolicy,
    log: Log,
}

impl Policy for TestPolicy {
    fn session(&self, _info: &SessionInfo<'_>) -> Box<dyn SessionPolicy> {
        Box::new(TestSession {
            deny: self.deny.clone(),
            log: self.log.clone(),
        })
    }
}

struct TestSession {
    deny: PatternPolicy,
    log: Log,
}

impl SessionPolicy for TestSession {
    fn decide(&mut self, statement: &Statement<'_>) -> Decision {
        self.deny.check(statement)
    }

    fn rewriter(&mut self) -> Option<Box<dyn Rewriter>> {
        Some(Box::new(Recorder {
            log: self.log.clone(),
        }))
    }
}

struct Recorder {
    log: Log,
}

impl Recorder {
    fn record(&self, seen: Seen) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seen);
    }
}

fn field(fields: &[(u8, String)], code: u8) -> String {
    fields
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

impl Rewriter for Recorder {
    fn data_row<'v>(
        &mut self,
        columns: Option<&[Column]>,
        values: &[Option<&'v [u8]>],
    ) -> Rewrite<Vec<Value<'v>>> {
        self.record(Seen::Row {
            columns: columns.map(<[Column]>::to_vec),
            values: values.iter().map(|v| v.map(<[u8]>::to_vec)).collect(),
        });
        let Some(columns) = columns else {
            return Rewrite::Keep;
        };
        // Text output of any type, or the binary form of text (its UTF-8
        // bytes): uppercase either.
        let rewritten =
            |c: &Column| c.name == "holder" && (c.format == Format::Text || c.type_oid == TEXT);
        if !columns.iter().any(rewritten) {
            return Rewrite::Keep;
        }
        Rewrite::Replace(
            values
                .iter()
                .zip(columns)
                .map(|(v, c)| match v {
                    Some(v) if rewritten(c) => Some(Cow::Owned(v.to_ascii_uppercase())),
                    v => v.map(Cow::Borrowed),
                })
                .collect(),
        )
    }

    fn copy_data(&mut self, format: Option<&CopyFormat>, data: &[u8]) -> Rewrite<Vec<u8>> {
        self.record(Seen::Copy {
            format: format.cloned(),
        });
        match format {
            Some(f) if f.format == Format::Text => Rewrite::Replace(data.to_ascii_uppercase()),
            _ => Rewrite::Keep,
        }
    }

    fn notice(&mut self, fields: &[(u8, String)]) -> RewriteOrDrop<Vec<(u8, String)>> {
        let message = field(fields, b'M');
        self.record(Seen::Notice(message.clone()));
        RewriteOrDrop::Replace(
            fields
                .iter()
                .map(|(c, v)| match c {
                    b'M' => (*c, format!("sluice saw: {message}")),
                    _ => (*c, v.clone()),
                })
                .collect(),
        )
    }

    fn notification(&mut self, n: &Notification) -> RewriteOrDrop<Notification> {
        self.record(Seen::Notification {
            channel: n.channel.clone(),
            payload: n.payload.clone(),
        });
        if n.channel == "quiet" {
            return RewriteOrDrop::Drop;
        }
        RewriteOrDrop::Replace(Notification {
            payload: format!("rewritten:{}", n.payload),
            ..n.clone()
        })
    }

    fn error(&mut self, fields: &[(u8, String)]) -> Rewrite<Vec<(u8, String)>> {
        let message = field(fields, b'M');
        self.record(Seen::Error {
            sqlstate: field(fields, b'C'),
            message: message.clone(),
        });
        Rewrite::Replace(
            fields
                .iter()
                .map(|(c, v)| match c {
                    b'M' => (*c, format!("{message} [via sluice]")),
                    _ => (*c, v.clone()),
                })
                .collect(),
        )
    }
}

/// The in-process engine: a thread inside the namespace running a tokio
/// runtime that serves every connection to `127.0.0.1:port`.
struct Engine {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One namespace with PostgreSQL on 127.0.0.1:5432 and the engine in
/// front of it. Fields drop in order: engine, server, namespace, files.
struct Lab {
    _engine: Engine,
    pg: Postgres,
    ns: Netns,
    scratch: Scratch,
    port: u16,
    log: Log,
}

impl Lab {
    fn start(tag: &str) -> Lab {
        let scratch = Scratch::new(&format!("rw-{tag}"));
        let ns = Netns::create(&format!("sl-rw-{tag}"));
        let pg = Postgres::start(&ns, &scratch.0, 5432);
        pg.sql(
            "CREATE TABLE cards (id int PRIMARY KEY, holder text NOT NULL, pan text NOT NULL);
             INSERT INTO cards VALUES (1, 'ada lovelace', '4111111111111111'),
                                      (2, 'bob', '5500000000000004');
             CREATE TABLE ledger AS SELECT g AS id, 'holder ' || g AS holder
                 FROM generate_series(1, 10) g;
             CREATE TABLE imported (id int, holder text);",
        );
        pg.sql(&format!("GRANT ALL ON cards, ledger, imported TO {USER}"));
        let log: Log = Arc::default();
        let config = SessionConfig {
            max_message: 64 * 1024 * 1024,
            policy: Arc::new(TestPolicy {
                deny: PatternPolicy::new(&["(?i)\\bdrop\\s+table\\b".into()]).unwrap(),
                log: log.clone(),
            }),
            cancels: CancelRegistry::default(),
            client_tls: None,
            store: None,
            metrics: Arc::default(),
            limits: Default::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Threads inherit the network namespace of the thread that spawns
        // them: the engine's thread, and its runtime's, live in `ns`.
        let (port, thread) = in_netns(&ns.path(), move || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("local addr").port();
            listener.set_nonblocking(true).expect("nonblocking");
            let thread = std::thread::spawn(move || serve(listener, config, stopped));
            (port, thread)
        });
        Lab {
            _engine: Engine {
                stop: Some(stop),
                thread: Some(thread),
            },
            pg,
            ns,
            scratch,
            port,
            log,
        }
    }

    /// Forget what the rewriter saw so far.
    fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// psql through the engine: (success, stdout, stderr).
    fn psql(&self, args: &[&str]) -> (bool, String, String) {
        let info = conninfo("127.0.0.1", self.port);
        let mut argv = vec!["psql", "-X", "-At", "-v", "ON_ERROR_STOP=0", info.as_str()];
        argv.extend_from_slice(args);
        let out = self.ns.try_run(&argv, Duration::from_secs(30));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn tokio_postgres_conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname=postgres",
            self.port
        )
    }
}

fn serve(
    listener: std::net::TcpListener,
    config: SessionConfig,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let database: SocketAddr = "127.0.0.1:5432".parse().expect("address");
        let target = Arc::new(TargetSettings {
            name: "lab".into(),
            tls: UpstreamTls::Disable,
            auth: TargetAuth::Passthrough,
        });
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((client, peer)) = accepted else { continue };
                    // As sluice-relay does: both legs without Nagle.
                    let _ = client.set_nodelay(true);
                    let config = config.clone();
                    let target = target.clone();
                    tokio::spawn(async move {
                        let route = Route {
                            original: database,
                            target: &target,
                            workload: Workload { addr: peer.ip(), uid: None },
                            identity: "in-process",
                            groups: &[],
                            facts: &Default::default(),
                        };
                        let dial = |addr| async move {
                            let upstream = tokio::net::TcpStream::connect(addr).await?;
                            upstream.set_nodelay(true)?;
                            Ok(upstream)
                        };
                        if let Err(e) = sluice_pgproxy::serve(client, route, &config, dial).await {
                            eprintln!("session ended: {e}");
                        }
                    });
                }
                _ = &mut stopped => break,
            }
        }
    });
}

/// Rows the rewriter saw, as (columns, values as text).
fn rows_of(seen: &[Seen]) -> Vec<(Option<Vec<Column>>, Vec<String>)> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Row { columns, values } => Some((
                columns.clone(),
                values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_deref().unwrap_or(b"NULL")).into_owned())
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

/// Every row the rewriter saw came with its columns.
fn assert_all_rows_described(seen: &[Seen], what: &str) {
    let rows = rows_of(seen);
    assert!(!rows.is_empty(), "{what}: no rows seen");
    let unknown: Vec<_> = rows.iter().filter(|(c, _)| c.is_none()).collect();
    assert!(
        unknown.is_empty(),
        "{what}: rows without columns: {unknown:?}"
    );
}

fn column<'a>(columns: &'a [Column], name: &str) -> &'a Column {
    columns
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name} in {columns:?}"))
}

#[test]
fn psql_and_libpq_see_rewritten_rows_copy_notices_notifications_and_errors() {
    if !require_privileged("rewrite_hook psql") {
        return;
    }
    let started = Instant::now();
    let lab = Lab::start("psql");
    let cards_oid: u32 = lab.pg.sql("SELECT 'cards'::regclass::oid").parse().unwrap();

    // Simple query: text rows, rewritten; the hook knows table and column.
    lab.clear();
    let (ok, out, err) = lab.psql(&["-c", "SELECT id, holder, pan FROM cards ORDER BY id"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "1|ADA LOVELACE|4111111111111111\n2|BOB|5500000000000004\n"
    );
    let seen = lab.seen();
    assert_all_rows_described(&seen, "simple query");
    let (columns, values) = &rows_of(&seen)[0];
    let columns = columns.as_ref().unwrap();
    assert_eq!(values, &["1", "ada lovelace", "4111111111111111"]);
    let holder = column(columns, "holder");
    assert_eq!(
        (
            holder.table_oid,
            holder.column,
            holder.type_oid,
            holder.format
        ),
        (cards_oid, 2, TEXT, Format::Text)
    );
    assert_eq!(column(columns, "id").type_oid, INT4);

    // A multi-statement query switches descriptions between statements:
    // the same data under another name is not rewritten.
    lab.clear();
    let (_, out, err) = lab.psql(&[
        "-c",
        "SELECT holder AS other FROM cards WHERE id = 1; SELECT 'x' AS holder, 42 AS n",
    ]);
    assert!(out.ends_with("X|42\n"), "{out}{err}");
    let seen = rows_of(&lab.seen());
    let names: Vec<Vec<&str>> = seen
        .iter()
        .map(|(c, _)| {
            c.as_ref()
                .unwrap()
                .iter()
                .map(|c| c.name.as_str())
                .collect()
        })
        .collect();
    assert_eq!(names, [vec!["other"], vec!["holder", "n"]]);

    // COPY TO STDOUT, text and binary.
    lab.clear();
    let (ok, out, err) = lab.psql(&[
        "-c",
        "\\copy (SELECT id, holder FROM cards ORDER BY id) TO STDOUT",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "1\tADA LOVELACE\n2\tBOB\n");
    let (ok, out, err) = lab.psql(&["-c", "\\copy cards TO STDOUT WITH (FORMAT binary)"]);
    assert!(ok && out.starts_with("PGCOPY"), "{err}");
    let formats: Vec<Format> = lab
        .seen()
        .iter()
        .filter_map(|s| match s {
            Seen::Copy { format } => Some(format.as_ref().expect("copy format").format),
            _ => None,
        })
        .collect();
    assert!(formats.len() >= 3, "{formats:?}");
    assert_eq!(formats[..2], [Format::Text, Format::Text]);
    assert!(
        formats[2..].iter().all(|f| *f == Format::Binary),
        "{formats:?}"
    );

    // A 10-row server-side cursor fetched 3 at a time, in a transaction;
    // then a BINARY cursor, whose RowDescription says binary.
    lab.clear();
    let mut args = vec![
        "-c",
        "BEGIN",
        "-c",
        "DECLARE c CURSOR FOR SELECT id, holder FROM ledger ORDER BY id",
    ];
    args.extend(["-c", "FETCH 3 FROM c"].repeat(4));
    args.extend([
        "-c",
        "DECLARE b BINARY CURSOR FOR SELECT id, holder FROM ledger ORDER BY id",
        "-c",
        "FETCH 3 FROM b",
        "-c",
        "COMMIT",
    ]);
    let (ok, out, err) = lab.psql(&args);
    assert!(ok, "{err}");
    for i in 1..=10 {
        assert!(out.contains(&format!("{i}|HOLDER {i}\n")), "{out}");
    }
    let seen = lab.seen();
    assert_all_rows_described(&seen, "cursor");
    let rows = rows_of(&seen);
    assert_eq!(rows.len(), 13, "{rows:?}");
    for (columns, _) in &rows[..10] {
        assert_eq!(
            column(columns.as_ref().unwrap(), "holder").format,
            Format::Text
        );
    }
    for (columns, values) in &rows[10..] {
        let columns = columns.as_ref().unwrap();
        let id = column(columns, "id");
        assert_eq!((id.format, id.type_oid), (Format::Binary, INT4));
        assert_eq!(column(columns, "holder").format, Format::Binary);
        assert!(values[1].starts_with("holder "), "{values:?}");
    }

    // psql's own cursor (FETCH_COUNT) over the same rows.
    lab.clear();
    let (ok, out, err) = lab.psql(&[
        "-v",
        "FETCH_COUNT=3",
        "-c",
        "SELECT id, holder FROM ledger ORDER BY id",
    ]);
    assert!(ok && out.contains("10|HOLDER 10"), "{out}{err}");
    assert_all_rows_described(&lab.seen(), "FETCH_COUNT");

    // RAISE NOTICE in a DO block; LISTEN/NOTIFY to itself, one channel
    // withheld; an error, and a refusal.
    lab.clear();
    let (_, out, err) = lab.psql(&[
        "-c",
        "DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$",
        "-c",
        "LISTEN loud",
        "-c",
        "LISTEN quiet",
        "-c",
        "NOTIFY quiet, 'secret'",
        "-c",
        "NOTIFY loud, 'hi'",
        "-c",
        "SELECT 1/0",
        "-c",
        "DROP TABLE cards",
        "-c",
        "SELECT 'still here'",
    ]);
    assert!(
        err.contains("NOTICE:  sluice saw: hello from plpgsql"),
        "{err}"
    );
    assert!(
        out.contains("Asynchronous notification \"loud\" with payload \"rewritten:hi\""),
        "{out}"
    );
    assert!(!out.contains("quiet") && !out.contains("secret"), "{out}");
    assert!(
        err.contains("ERROR:  division by zero [via sluice]"),
        "{err}"
    );
    assert!(
        err.contains("ERROR:  sluice: statement refused by policy [via sluice]"),
        "{err}"
    );
    assert!(out.contains("still here"), "{out}");
    let seen = lab.seen();
    let errors: Vec<_> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Error { sqlstate, message } => Some((sqlstate.as_str(), message.as_str())),
            _ => None,
        })
        .collect();
    // The hook sees sluice's refusal, not the poison statement's error.
    assert_eq!(
        errors,
        [
            ("22012", "division by zero"),
            ("42501", "sluice: statement refused by policy")
        ]
    );
    assert!(
        seen.iter()
            .any(|s| matches!(s, Seen::Notice(m) if m == "hello from plpgsql"))
    );
    assert!(seen.iter().any(
        |s| matches!(s, Seen::Notification { channel, payload } if channel == "quiet" && payload == "secret")
    ));
    assert_eq!(lab.pg.sql("SELECT count(*) FROM cards"), "2");

    // libpq's extended protocol: pgbench -M extended (Parse/Bind/Describe
    // portal/Execute) and -M prepared (named statements, bound again and
    // again), text results.
    let script = lab.scratch.path("holder.sql");
    std::fs::write(&script, "SELECT id, holder FROM cards WHERE id = 1;\n").unwrap();
    for mode in ["extended", "prepared"] {
        lab.clear();
        let pw = format!("PGPASSWORD={PASSWORD}");
        let port = lab.port.to_string();
        let out = lab.ns.try_run(
            &[
                "env",
                &pw,
                "pgbench",
                "-n",
                "-M",
                mode,
                "-t",
                "5",
                "-f",
                script.to_str().unwrap(),
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                USER,
                "postgres",
            ],
            Duration::from_secs(60),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("number of failed transactions: 0"),
            "pgbench -M {mode}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let seen = lab.seen();
        assert_all_rows_described(&seen, mode);
        let rows: Vec<_> = rows_of(&seen)
            .into_iter()
            .filter(|(_, v)| v == &["1", "ada lovelace"])
            .collect();
        assert_eq!(rows.len(), 5, "pgbench -M {mode}: {rows:?}");
        for (columns, _) in rows {
            let holder = column(columns.as_ref().unwrap(), "holder");
            assert_eq!((holder.format, holder.type_oid), (Format::Text, TEXT));
        }
    }
    eprintln!("psql/libpq lab: {:?}", started.elapsed());
}

#[test]
fn tokio_postgres_binary_results_prepared_statements_portals_and_copy() {
    if !require_privileged("rewrite_hook tokio-postgres") {
        return;
    }
    let started = Instant::now();
    let lab = Lab::start("tpg");
    let conn = lab.tokio_postgres_conninfo();
    let got = in_netns(&lab.ns.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(tokio_postgres_session(conn))
    });
    let seen = lab.seen();
    // Everything tokio-postgres ran — prepared, unnamed-and-typed, portal,
    // simple, pipelined, after COPY — came with its columns.
    assert_all_rows_described(&seen, "tokio-postgres");

    assert_eq!(got.holders, ["ADA LOVELACE", "BOB"]);
    assert_eq!(got.prepared, ["ADA LOVELACE", "BOB", "ADA LOVELACE"]);
    assert_eq!(got.typed, "BOB");
    assert_eq!(
        got.portal,
        (1..=10).map(|i| format!("HOLDER {i}")).collect::<Vec<_>>()
    );
    assert_eq!(got.portal_batches, [3, 3, 3, 1, 0]);
    assert_eq!(got.simple, ["ADA LOVELACE", "BOB"]);
    assert_eq!(got.pipelined.0, "ADA LOVELACE");
    assert_eq!(got.pipelined.1, "division by zero [via sluice]");
    assert_eq!(got.pipelined.2, "BOB");
    assert_eq!(
        got.refused,
        "sluice: statement refused by policy [via sluice]"
    );
    assert_eq!(got.notice, "sluice saw: n1");
    assert_eq!(
        got.notifications,
        [("loud".to_string(), "rewritten:hi".to_string())]
    );
    assert_eq!(got.copied_in, 2);
    assert_eq!(got.after_copy, "IMPORTED ONE");
    assert!(got.copy_out.starts_with(b"PGCOPY"));

    // tokio-postgres asks for binary results: the hook was told so, with
    // the real type OIDs.
    let rows = rows_of(&seen);
    let binary_row = rows
        .iter()
        .find(|(c, v)| c.is_some() && v.len() == 3)
        .expect("the first query's rows");
    let columns = binary_row.0.as_ref().unwrap();
    let id = column(columns, "id");
    let holder = column(columns, "holder");
    assert_eq!((id.format, id.type_oid), (Format::Binary, INT4));
    assert_eq!((holder.format, holder.type_oid), (Format::Binary, TEXT));
    assert_eq!(binary_row.1[1], "ada lovelace");
    assert_eq!(id.column, 1);
    assert_eq!(holder.column, 2);
    // The portal's ten rows, fetched three at a time, each with columns.
    let ledger: Vec<_> = rows
        .iter()
        .filter(|(_, v)| v.len() == 2 && v[1].starts_with("holder "))
        .collect();
    assert_eq!(ledger.len(), 10, "{ledger:?}");
    assert!(ledger.iter().all(|(c, _)| {
        c.as_ref()
            .is_some_and(|c| column(c, "holder").format == Format::Binary)
    }));
    // Simple-protocol rows are text.
    assert!(rows.iter().any(|(c, v)| {
        v.len() == 1 && v[0] == "bob" && c.as_ref().is_some_and(|c| c[0].format == Format::Text)
    }));
    // COPY: binary out.
    assert!(seen.iter().any(|s| matches!(
        s,
        Seen::Copy { format: Some(f) } if f.format == Format::Binary
    )));
    eprintln!("tokio-postgres lab: {:?}", started.elapsed());
}

/// What the tokio-postgres client saw.
struct Got {
    holders: Vec<String>,
    prepared: Vec<String>,
    typed: String,
    portal: Vec<String>,
    portal_batches: Vec<usize>,
    simple: Vec<String>,
    pipelined: (String, String, String),
    refused: String,
    notice: String,
    notifications: Vec<(String, String)>,
    copied_in: u64,
    after_copy: String,
    copy_out: Vec<u8>,
}

async fn tokio_postgres_session(conn: String) -> Got {
    use futures_util::{SinkExt, StreamExt, TryStreamExt};
    use tokio_postgres::{AsyncMessage, SimpleQueryMessage, types::Type};

    let (mut client, mut connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("connect through the engine");
    let (tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = stream.next().await {
            let _ = tx.send(message);
        }
    });

    // Extended protocol, binary results (prepare: Parse + Describe S).
    let holders = client
        .query("SELECT id, holder, pan FROM cards ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>("holder"))
        .collect();

    // A named statement prepared once, bound and executed again and again.
    let statement = client
        .prepare("SELECT holder FROM cards WHERE id = $1")
        .await
        .unwrap();
    let mut prepared = Vec::new();
    for id in [1i32, 2, 1] {
        let row = client.query_one(&statement, &[&id]).await.unwrap();
        prepared.push(row.get::<_, String>(0));
    }

    // Unnamed statement with Describe after Bind (query_typed).
    let typed = client
        .query_typed(
            "SELECT holder FROM cards WHERE id = $1",
            &[(&2i32, Type::INT4)],
        )
        .await
        .unwrap()[0]
        .get::<_, String>(0);

    // A portal (server-side cursor) fetched 3 rows at a time: Execute with
    // a row limit, PortalSuspended, resumed.
    let transaction = client.transaction().await.unwrap();
    let portal = transaction
        .bind("SELECT id, holder FROM ledger ORDER BY id", &[])
        .await
        .unwrap();
    let mut portal_rows = Vec::new();
    let mut portal_batches = Vec::new();
    loop {
        let batch = transaction.query_portal(&portal, 3).await.unwrap();
        portal_batches.push(batch.len());
        if batch.is_empty() {
            break;
        }
        portal_rows.extend(batch.iter().map(|r| r.get::<_, String>(1)));
    }
    drop(portal);
    transaction.commit().await.unwrap();

    // Simple protocol: text results.
    let simple = client
        .simple_query("SELECT holder FROM cards ORDER BY id")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();

    // A pipeline with an error in the middle.
    let a = client.query_one("SELECT holder FROM cards WHERE id = 1", &[]);
    let b = client.query_one("SELECT 1/0", &[]);
    let c = client.query_one("SELECT holder FROM cards WHERE id = 2", &[]);
    let (a, b, c) = futures_util::join!(a, b, c);
    let pipelined = (
        a.unwrap().get::<_, String>(0),
        b.unwrap_err().as_db_error().unwrap().message().to_owned(),
        c.unwrap().get::<_, String>(0),
    );

    // A refusal in the extended protocol.
    let refused = client
        .query("DROP TABLE cards", &[])
        .await
        .unwrap_err()
        .as_db_error()
        .unwrap()
        .message()
        .to_owned();

    // Notices and notifications.
    client
        .batch_execute(
            "DO $$ BEGIN RAISE NOTICE 'n1'; END $$; LISTEN loud; LISTEN quiet;
             NOTIFY quiet, 'secret'; NOTIFY loud, 'hi'",
        )
        .await
        .unwrap();
    let mut notice = String::new();
    let mut notifications = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while notice.is_empty() || notifications.is_empty() {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.recv()).await else {
            break;
        };
        match message {
            AsyncMessage::Notice(n) => notice = n.message().to_owned(),
            AsyncMessage::Notification(n) => {
                notifications.push((n.channel().to_owned(), n.payload().to_owned()))
            }
            _ => {}
        }
    }
    // Anything withheld would have arrived with the rest.
    while let Ok(Some(AsyncMessage::Notification(n))) =
        tokio::time::timeout(Duration::from_millis(200), messages.recv()).await
    {
        notifications.push((n.channel().to_owned(), n.payload().to_owned()));
    }

    // COPY FROM STDIN in the extended protocol (Sync sent with the Execute,
    // then data, CopyDone, Sync), then a query that must still be placed.
    let sink = client.copy_in("COPY imported FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"1\timported one\n2\timported two\n",
    ))
    .await
    .unwrap();
    let copied_in = sink.as_mut().finish().await.unwrap();
    let after_copy = client
        .query_one("SELECT holder FROM imported WHERE id = 1", &[])
        .await
        .unwrap()
        .get::<_, String>(0);

    // COPY TO STDOUT, binary.
    let copy_out: Vec<u8> = client
        .copy_out("COPY cards TO STDOUT (FORMAT binary)")
        .await
        .unwrap()
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap();

    Got {
        holders,
        prepared,
        typed,
        portal: portal_rows,
        portal_batches,
        simple,
        pipelined,
        refused,
        notice,
        notifications,
        copied_in,
        after_copy,
        copy_out,
    }
}
