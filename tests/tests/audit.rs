//! The session store, end to end: sessions through the gateway are recorded
//! and the auditor's commands read, export, verify and replay them; a
//! killed daemon loses no executed statement; a full disk refuses
//! statements instead of letting them through unrecorded.
//!
//! Real kernel interception in namespaces, real PostgreSQL, real psql and
//! pgbench on the agent host, the real `sluice` binary for the auditor.
use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::Output,
    time::{Duration, Instant},
};

use sluice_lab::{
    daemon::store_dir,
    faults::{allowed_statements, executed_statements, export_events},
    netns, postgres, require_privileged,
    scenario::{GatewayRun, start_custom, start_with_test_policy},
};

fn audit(run: &GatewayRun, args: &[&str]) -> Output {
    let store = store_dir(&run.scratch.0);
    let mut argv = vec!["audit"];
    argv.extend_from_slice(&args[..1]);
    argv.extend(["--store", store.to_str().unwrap()]);
    argv.extend_from_slice(&args[1..]);
    run.daemon.cli(&argv)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Wait (bounded) until `audit list` shows `n` ended sessions.
fn wait_ended(run: &GatewayRun, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = audit(run, &["list", "--json"]);
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        let ended = listed.lines().filter(|l| l.contains("\"end\"")).count();
        if ended >= n || Instant::now() > deadline {
            assert!(ended >= n, "{ended} of {n} sessions ended:\n{}", text(&out));
            return listed;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a1_sessions_are_recorded_and_the_auditor_can_list_show_export_verify_and_replay() {
    if !require_privileged("a1") {
        return;
    }
    let mut run = start_with_test_policy("a1", 27);
    let host = run.lab.db_ip.clone();
    let (ok, out, err) = run.agent_psql(
        &host,
        "SELECT holder, pan FROM cards ORDER BY id; SELECT 'card 4111 1111 1111 1111' AS note;",
    );
    assert!(ok, "{err}");
    // The content detectors mask PANs on their way to the client as well.
    assert!(
        out.contains("411111******1111") && !out.contains("4111111111111111"),
        "{out}"
    );
    let (ok, _, err) = run.agent_psql(&host, "DROP TABLE cards");
    assert!(!ok && err.contains("refused by policy"), "{err}");
    let (ok, _, err) = run.agent_psql(&host, "SELECT * FROM no_such_table");
    assert!(!ok && err.contains("does not exist"), "{err}");
    let listed = wait_ended(&run, 3);
    let agent_identity = format!("host:{}", run.lab.agent_ip);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains(&agent_identity), "{listed}");

    // The table view, and filters.
    let out = audit(&run, &["list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 session(s)"), "{}", text(&out));
    let out = audit(&run, &["list", "--decision", "deny"]);
    assert!(text(&out).contains("1 session(s)"), "{}", text(&out));
    let out = audit(
        &run,
        &["list", "--identity", &agent_identity, "--since", "1h"],
    );
    assert!(text(&out).contains("3 session(s)"), "{}", text(&out));
    let out = audit(&run, &["list", "--identity", "host:192.0.2.1"]);
    assert!(text(&out).contains("0 session(s)"), "{}", text(&out));

    // Session 1 as it happened: start facts, statement, outcomes with
    // results, the PAN in the statement masked, the end.
    let out = audit(&run, &["show", "1"]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for needle in [
        &format!("start    {agent_identity} as postgres to lab-pg"),
        "user=agent",
        "ALLOW    [simple] sql: SELECT holder, pan FROM cards ORDER BY id;",
        "card 4111 11** **** 1111",
        "outcome  #1 ok SELECT 2",
        "result: 2 rows",
        "[\"holder\",\"pan\"]",
        "end      client terminated",
    ] {
        assert!(shown.contains(needle), "missing {needle:?} in:\n{shown}");
    }
    assert!(!shown.contains("4111 1111 1111 1111"), "{shown}");
    let out = audit(&run, &["show", "2"]);
    let shown = text(&out);
    assert!(
        shown.contains("DENY     [simple] sql: DROP TABLE cards rule=")
            && shown.contains("error 42501 sluice: statement refused by policy"),
        "{shown}"
    );
    let out = audit(&run, &["show", "3"]);
    assert!(text(&out).contains("error 42P01"), "{}", text(&out));

    // Verify the live store, then with the key file the daemon wrote.
    let out = audit(&run, &["verify", "--live"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("verified: intact"), "{}", text(&out));
    let pubkey = run.scratch.0.join("audit.key.pub");
    let out = audit(
        &run,
        &["verify", "--live", "--key", pubkey.to_str().unwrap()],
    );
    assert!(text(&out).contains("3 session(s)"), "{}", text(&out));
    assert!(out.status.success(), "{}", text(&out));

    // Export everything, verify the export alone; export CSV.
    let export = run.scratch.0.join("export.jsonl");
    let out = audit(&run, &["export", "--output", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run.daemon.cli(&[
        "audit",
        "verify",
        "--live",
        "--export",
        export.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let exported = fs::read_to_string(&export).unwrap();
    assert!(!exported.contains("4111 1111 1111 1111"));
    // One edited statement in the export: verify fails and names it.
    let edited = run.scratch.0.join("edited.jsonl");
    fs::write(&edited, exported.replacen("ORDER BY id", "ORDER BY 1 ", 1)).unwrap();
    let out = run.daemon.cli(&[
        "audit",
        "verify",
        "--live",
        "--export",
        edited.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("first bad: session 1 event 1:"),
        "{}",
        text(&out)
    );
    let out = audit(&run, &["export", "--format", "csv", "--session", "2"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("session,seq,time,identity"), "{csv}");
    assert!(csv.contains("DROP TABLE cards,deny"), "{csv}");

    let out = audit(&run, &["replay", "1"]);
    assert!(text(&out).contains("replaying session 1"), "{}", text(&out));
    let out = audit(&run, &["stats"]);
    assert!(text(&out).contains("sessions     3"), "{}", text(&out));

    // Stopped cleanly, the store ends with a signed shutdown checkpoint and
    // verifies strictly (no --live).
    run.daemon.stop();
    let out = audit(&run, &["verify", "--key", pubkey.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("newest checkpoint: #"),
        "{}",
        text(&out)
    );
    // A copy of the store directory, as an auditor would take away.
    let copy = run.scratch.0.join("store-copy");
    let cp = std::process::Command::new("cp")
        .args(["-a", store_dir(&run.scratch.0).to_str().unwrap()])
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    let out = run.daemon.cli(&[
        "audit",
        "verify",
        "--store",
        copy.to_str().unwrap(),
        "--key",
        pubkey.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 session(s)"), "{}", text(&out));

    // Files are private: the store directory 700, its files and the key 600.
    let store = store_dir(&run.scratch.0);
    assert_eq!(
        fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in fs::read_dir(&store).unwrap() {
        let meta = entry.as_ref().unwrap().metadata().unwrap();
        if meta.is_file() {
            assert_eq!(
                meta.mode() & 0o077,
                0,
                "{:?} is readable by others",
                entry.unwrap().path()
            );
        }
    }
    let key = run.scratch.0.join("audit.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a2_kill_9_under_pgbench_loses_no_executed_write() {
    if !require_privileged("a2") {
        return;
    }
    let mut run = start_with_test_policy("a2", 28);
    run.pg.sql("SELECT 1");
    let pgbench_init = std::process::Command::new("pgbench")
        .args(["-i", "-s", "1", "-q", "-h"])
        .arg(&run.pg.dir)
        .args(["-p", "5432", "-U", "postgres", "postgres"])
        .output()
        .unwrap();
    assert!(pgbench_init.status.success(), "{}", text(&pgbench_init));
    run.pg.sql(&format!(
        "GRANT SELECT, UPDATE ON pgbench_accounts TO {0}; GRANT SELECT ON pgbench_branches TO {0}",
        postgres::USER
    ));
    run.pg.sql(&format!(
        "ALTER ROLE {} SET log_statement = 'all'",
        postgres::USER
    ));
    let host = run.lab.db_ip.clone();
    // Each transaction reads a row and writes it.
    let script = run.scratch.0.join("read-write.sql");
    fs::write(
        &script,
        "\\set aid random(1, 100000)\n\
         SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
         UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n",
    )
    .unwrap();
    const CLIENTS: usize = 4;
    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        // pgbench through the gateway; sluice is killed under it.
        let mut bench = run
            .lab
            .agent
            .command(&[
                "env",
                &format!("PGPASSWORD={}", postgres::PASSWORD),
                "PGSSLMODE=disable",
                "pgbench",
                "-n",
                "-f",
                script.to_str().unwrap(),
                "-c",
                &CLIENTS.to_string(),
                "-T",
                "30",
                "-h",
                &host,
                "-U",
                postgres::USER,
                "postgres",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2500 + 700 * round as u64));
        run.daemon.kill9();
        // Interception stays pinned: the agents fail closed meanwhile.
        let (ok, _, _) = run.agent_psql(&host, "SELECT 'during the gap'");
        assert!(!ok, "a statement passed while sluice was down");
        let _ = bench.kill();
        let _ = bench.wait();
        run.daemon.restart(None);
        let out = audit(&run, &["verify"]);
        assert!(
            out.status.success(),
            "round {round}: verify after restart:\n{}",
            text(&out)
        );
    }
    let (ok, _, err) = run.agent_psql(&host, "SELECT 'after the last restart'");
    assert!(ok, "{err}");
    wait_ended(&run, 1);
    let executed = executed_statements(&run.pg.log_text());
    let recorded = allowed_statements(&export_events(&run.daemon, &run.scratch.0));
    let total: usize = executed.values().sum();
    assert!(total > 100, "pgbench ran only {total} statements");
    // A write runs only once its record is durable, so none may be
    // missing. A read runs while its record is written and its answer waits
    // for it: a crash in between can lose the record of a read whose answer
    // nobody received — at most the one read each client has in flight.
    let (mut missing_writes, mut missing_reads) = (Vec::new(), 0);
    for (stmt, n) in &executed {
        let have = recorded.get(stmt).copied().unwrap_or(0);
        if have < *n {
            if stmt.starts_with("SELECT") {
                missing_reads += n - have;
            } else {
                missing_writes.push(format!("{stmt} (executed {n}, recorded {have})"));
            }
        }
    }
    assert!(
        missing_writes.is_empty(),
        "{} of {total} executed writes are missing from the store, e.g. {:?}",
        missing_writes.len(),
        &missing_writes[..missing_writes.len().min(5)]
    );
    assert!(
        missing_reads <= CLIENTS * ROUNDS,
        "{missing_reads} executed reads are missing from the store: more than the {CLIENTS} in flight at each of {ROUNDS} crashes"
    );
    assert!(!executed.contains_key("SELECT 'during the gap'"));
    let interrupted = audit(&run, &["list", "--json"]);
    assert!(
        String::from_utf8_lossy(&interrupted.stdout).contains("interrupted"),
        "no session was closed as interrupted by recovery"
    );
    eprintln!(
        "a2: {total} executed statements across {ROUNDS} kill -9 restarts: every write recorded, {missing_reads} unanswered in-flight reads not"
    );
}

#[test]
fn a3_a_full_store_disk_refuses_statements_until_space_returns() {
    if !require_privileged("a3") {
        return;
    }
    // The store directory is its own tmpfs: 160 MiB, so that once the
    // filler is gone RocksDB finds the 64 MiB it wants free to resume.
    let mut mounted = None;
    let run = start_custom("a3", 29, |p| {
        mounted = Some(netns::mount_tmpfs(&store_dir(&p.scratch.0), "160m"));
        p.pg.sql(&format!(
            "ALTER ROLE {} SET log_statement = 'all'",
            postgres::USER
        ));
        Default::default()
    });
    let host = run.lab.db_ip.clone();
    let (ok, out, err) = run.agent_psql(&host, "SELECT 'before the disk filled'");
    assert!(ok && out.contains("before"), "{err}");

    // Fill the store's filesystem, then run statements one by one until
    // the store cannot take their events (the WAL's last page may still
    // hold a few).
    let filler = store_dir(&run.scratch.0).join("filler");
    let _ = netns::sh(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", filler.display()),
        "bs=1M",
        "count=200",
    ]);
    let script = run.scratch.0.join("fill.sql");
    // Each statement's record holds its text: 32 KB of padding outgrows
    // the WAL space RocksDB set aside before the disk filled.
    let pad = "x".repeat(32_000);
    let sql: String = (1..=2000)
        .map(|i| format!("SELECT 'fill-{i}' WHERE length('{pad}') > 0;\n"))
        .collect();
    fs::write(&script, sql).unwrap();
    let info = postgres::conninfo(&host, 5432);
    let out = run.lab.agent.try_run(
        &[
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            &info,
            "-f",
            script.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "2000 statements ran with the store full"
    );
    assert!(
        err.contains("the audit store could not record this statement"),
        "{err}"
    );
    // psql names the line (= the statement) that was refused.
    let refused: usize = err
        .split("fill.sql:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line number in {err}"));
    let log = run.pg.log_text();
    assert!(log.contains("SELECT 'before the disk filled'"), "{log}");
    // A read changes nothing, so it may have run while its record was
    // being written (the early path); its rows must never reach the client.
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        refused == 1 || printed.contains(&format!("fill-{}\n", refused - 1)),
        "the reads before the refused one were answered: {printed}"
    );
    assert!(
        !printed.contains(&format!("fill-{refused}\n")),
        "the client got the answer of a statement the store could not record"
    );
    assert!(
        run.daemon.log_text().contains("audit store: write failed"),
        "{}",
        run.daemon.log_text()
    );
    // The daemon itself goes on: other sessions are refused the same way. A
    // read's answer is withheld; a write never reaches the database.
    let (ok, out, err) = run.agent_psql(&host, "SELECT 'read while full'");
    assert!(!ok && err.contains("audit store"), "{err}");
    assert!(!out.contains("read while full"), "{out}");
    let (ok, _, err) = run.agent_psql(&host, "UPDATE cards SET holder = 'still full'");
    assert!(!ok && err.contains("audit store"), "{err}");
    assert!(!run.pg.log_text().contains("still full"));

    // Space comes back. RocksDB resumes writing by itself once the disk has
    // room for its memtables (its SstFileManager looks every 5 s), and the
    // store with it: new sessions work again without a restart, and the
    // sessions the failure cut short are closed in the record.
    fs::remove_file(&filler).unwrap();
    let freed = std::time::Instant::now();
    let back = sluice_lab::wait_for(Duration::from_secs(30), || {
        let (ok, out, _) = run.agent_psql(&host, "SELECT 'after space came back'");
        (ok && out.contains("after space came back")).then_some(())
    });
    assert!(
        back.is_some(),
        "the store did not write again within 30 s of space coming back: {}",
        run.daemon.log_text()
    );
    eprintln!(
        "a3: writing again {:?} after space came back",
        freed.elapsed()
    );
    let (ok, out, err) = run.agent_psql(&host, "SELECT 'space back, recorded'");
    assert!(ok && out.contains("space back"), "{err}");
    sluice_lab::daemon::assert_store_recovered(&run.daemon, &run.scratch.0, "space back, recorded");
    drop(run);
    drop(mounted);
}
