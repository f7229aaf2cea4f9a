//! `cargo xtask demo`: sluice's whole story, told by a real lab and checked
//! as it goes. Two agent hosts (an AI agent running a Python script, and a
//! host of legacy jobs using psql and mysql) reach PostgreSQL and MariaDB
//! through a gateway where sluice runs. Without any change to the agents,
//! they see masked card numbers, a DELETE without WHERE is refused, a schema
//! change waits for a human who approves it through the admin API signed in
//! with a real OpenID provider, a few bypasses fail, a crash fails closed,
//! and an auditor exports, verifies and replays the record.
//!
//! Non-interactive; exits non-zero if any claim does not hold. `--keep`
//! leaves the lab running and prints how to try it by hand.
//!
//! Layout: [`lab`] builds the world and the sample policy; [`narrator`]
//! prints; this file is the story.
pub mod lab;
mod narrator;

use std::{io::Read, time::Duration};

use crate::{leaks, mariadb, wait_for};
pub use lab::DemoLab;
use lab::{API, PANS};
use narrator::Narrator;

pub fn run(keep: bool) -> anyhow::Result<()> {
    if keep {
        // Checked before anything is built: the state file names one lab.
        crate::labctl::refuse_if_up()?;
    }
    let mut n = Narrator::new(if keep { 8 } else { 9 });
    n.title(
        "sluice demo: unmodified agents, cardholder data, and a gateway that keeps them honest",
    );

    n.step("Building the lab: two agent hosts ─ gateway ─ database host, in network namespaces");
    let mut d = DemoLab::start()?;
    n.say(&format!(
        "AI agent host    {:<14} (a Python script)\n\
         legacy job host  {:<14} (psql, mysql)\n\
         gateway          {} | {}   sluice, its admin API, an OpenID provider\n\
         database host    {:<14} PostgreSQL 15 :5432, MariaDB 10.11 :3306\n\
         Both databases hold a `cards` table of Luhn-valid test card numbers.",
        d.agent_a.ip, d.agent_b.ip, d.lab.gw_agent_ip, d.lab.gw_db_ip, d.lab.db_ip
    ));
    let cards_pg = d.pg.sql("SELECT count(*) FROM cards");
    let cards_my = d.mariadb.sql(&format!(
        "SELECT count(*) FROM {}.cards",
        crate::mariadb::DATABASE
    ));
    n.say(&format!(
        "The OpenID provider is up at {}",
        d.provider.issuer()
    ));
    n.check(
        &format!(
            "lab built: PostgreSQL ({cards_pg} cards) and MariaDB ({cards_my} cards) answer, the OpenID provider is up"
        ),
        [&cards_pg, &cards_my]
            .iter()
            .all(|c| c.parse::<u32>().is_ok_and(|n| n > 0)),
    );

    attach(&mut n, &d);
    reads(&mut n, &d);
    refusals(&mut n, &d);
    approval(&mut n, &d);
    bypasses(&mut n, &d);
    crash(&mut n, &mut d);
    let figures = auditor(&mut n, &d);

    if keep {
        n.summary(&figures);
        println!();
        d.print_howto();
        crate::labctl::keep_demo(d)?;
        return verdict(&n);
    }

    n.step("sluice stops cleanly: no program, pin or routing rule is left behind");
    let status = d.daemon.stop();
    let rules = d.lab.gw.run(&["ip", "rule", "show"]);
    let tc_a = d
        .lab
        .gw
        .run(&["bpftool", "net", "show", "dev", &d.agent_a.gw_if]);
    let tc_b = d
        .lab
        .gw
        .run(&["bpftool", "net", "show", "dev", &d.agent_b.gw_if]);
    n.check(
        "clean stop leaves nothing behind",
        status.success()
            && !rules.contains("fwmark")
            && !tc_a.contains("sluice")
            && !tc_b.contains("sluice")
            && !d.bpffs.exists(),
    );
    drop(d);
    n.summary(&figures);
    verdict(&n)
}

fn verdict(n: &Narrator) -> anyhow::Result<()> {
    if n.all_passed() {
        println!(
            "\n{}",
            n.paint(
                "1;32",
                "demo passed: every agent went through sluice unmodified, and the record proves it."
            )
        );
        Ok(())
    } else {
        anyhow::bail!("demo failed: see the ✗ claims above")
    }
}

fn attach(n: &mut Narrator, d: &DemoLab) {
    n.step("sluice starts on the gateway: tc ingress on both agent links, fwmark policy routing");
    let log = d.daemon.log_text();
    let attached: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("attached") || l.contains("protecting"))
        .map(|l| {
            l.split("sluice_intercept::interceptor: ")
                .last()
                .unwrap_or(l)
        })
        .collect();
    n.say(&attached.join("\n"));
    n.say("Its sample policy, in short:");
    n.output(
        "agents read and write          allow  read, write, transaction, utility\n\
         no unbounded delete or update  deny   DELETE/UPDATE without WHERE\n\
         schema changes need a human    approve DDL from the AI agent\n\
         masking: cards.pan → PCI display (first 6, last 4); computed copies redacted;\n\
                  probing it in WHERE, or storing it elsewhere, refused",
    );
    n.check(
        "interception attached to both agent-facing interfaces",
        log.contains("sluice is intercepting")
            && log.contains(&d.agent_a.gw_if)
            && log.contains(&d.agent_b.gw_if),
    );
}

/// Agents read cards as they always have, and see masked PANs.
fn reads(n: &mut Narrator, d: &DemoLab) {
    n.step("The agents read cards exactly as they always have — and see masked card numbers");
    let mut seen = String::new();

    n.say("The AI agent's Python script (psycopg2), on its own host:");
    n.command(&format!(
        "python3 demo_agent.py read \"host={} port=5432 …\"",
        d.lab.db_ip
    ));
    let out = d
        .python_agent("read")
        .output()
        .expect("run the Python agent");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    n.output(&text);
    seen += &text;
    let python_ok = out.status.success() && text.contains("411111******1111");

    n.say("A legacy job's psql:");
    n.command(&format!(
        "psql \"host={} …\" -c 'select holder, pan from cards'",
        d.lab.db_ip
    ));
    let (ok_psql, text) = d.psql(
        &d.agent_b.ns,
        "select holder, pan from cards order by id limit 2",
    );
    n.output(&text);
    seen += &text;
    let psql_ok = ok_psql && text.contains("550000******5559");

    n.say("A legacy job's mysql client, against MariaDB:");
    n.command(&format!(
        "mysql -h {} shop -e 'select holder, pan, cvv, pan_num from cards'",
        d.lab.db_ip
    ));
    let (ok_my, text) = d.mysql(
        &d.agent_b.ns,
        "select holder, pan, cvv, pan_num from cards order by id",
    );
    n.output(&text);
    seen += &text;
    let mysql_ok = ok_my && text.contains("411111******1111") && !text.contains("| 123 ");

    n.check("the Python agent saw masked PANs", python_ok);
    n.check("psql saw masked PANs", psql_ok);
    n.check("mysql saw masked PANs, the CVV redacted", mysql_ok);
    let all_pans: Vec<&str> = PANS.iter().chain(mariadb::PANS.iter()).copied().collect();
    let leak = leaks::leak(&seen, &all_pans);
    n.check(
        &format!(
            "no card number in any agent's output{}",
            leak.map(|l| format!(" (leaked: {l})")).unwrap_or_default()
        ),
        !seen.is_empty() && leaks::leak(&seen, &all_pans).is_none(),
    );
    let pg_log = d.pg.log_text();
    let direct = pg_log
        .lines()
        .filter(|l| {
            l.contains("connection received")
                && (l.contains(&format!("host={} ", d.agent_a.ip))
                    || l.contains(&format!("host={} ", d.agent_b.ip)))
        })
        .count()
        + d.mariadb.connections_from(&d.agent_a.ip)
        + d.mariadb.connections_from(&d.agent_b.ip);
    n.say(&format!(
        "Both databases saw only the gateway ({}) as their client.",
        d.lab.gw_db_ip
    ));
    n.check("no agent reached a database directly", direct == 0);
}

/// DELETE without WHERE is refused on both databases.
fn refusals(n: &mut Narrator, d: &DemoLab) {
    n.step("A legacy job's runaway DELETE without WHERE is refused before it reaches the database");
    n.command("psql … -c 'delete from cards'");
    let (ok, text) = d.psql(&d.agent_b.ns, "delete from cards");
    n.output(&text);
    let pg_left = d.pg.sql("select count(*) from cards").trim().to_owned();
    let pg_ok = !ok && text.contains("no unbounded delete or update") && pg_left == "4";
    n.command("mysql … -e 'DELETE FROM cards'");
    let (ok, text) = d.mysql(&d.agent_b.ns, "DELETE FROM cards");
    n.output(&text);
    let my_left = d
        .mariadb
        .sql("SELECT COUNT(*) FROM shop.cards")
        .trim()
        .to_owned();
    let my_ok = !ok && text.contains("1142") && my_left.ends_with('2');
    n.say(&format!(
        "Rows left: PostgreSQL {pg_left}, MariaDB {}; the sessions stayed usable.",
        my_left.lines().last().unwrap_or("?")
    ));
    n.check(
        "PostgreSQL: refused with the rule named, every row still there",
        pg_ok,
    );
    n.check(
        "MariaDB: refused (ERR 1142) with the rule named, every row still there",
        my_ok,
    );
}

/// A DDL from the AI agent waits until an approver approves it.
fn approval(n: &mut Narrator, d: &DemoLab) {
    n.step("The AI agent's schema migration waits for a human, who approves it through the API");
    n.command(
        "python3 demo_agent.py migrate …   # ALTER TABLE cards ADD COLUMN last_reviewed date",
    );
    let mut agent = d
        .python_agent("migrate")
        .spawn()
        .expect("start the Python agent");
    n.say("The agent's connection simply waits. An approver signs in (OpenID device flow):");
    let bob = d.provider.id_token("sluice-cli", "bob");
    let _ = std::fs::write(d.scratch.path("bob.token"), &bob);
    n.command("sluice login   # as bob, an approver");
    n.command(&format!("sluice approvals list --api http://{API}"));
    let pending = wait_for(Duration::from_secs(20), || {
        let out = d.sluice_as(
            &bob,
            &[
                "approvals",
                "list",
                "--json",
                "--api",
                &format!("http://{API}"),
            ],
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let items = list["approvals"].as_array()?.clone();
        (!items.is_empty()).then_some(items)
    })
    .unwrap_or_default();
    let held = pending.first().cloned().unwrap_or_default();
    let id = held["id"].as_str().unwrap_or("").to_owned();
    n.output(&format!(
        "{id}  identity={}  target={}  rule={}\n  {}",
        held["identity"].as_str().unwrap_or("?"),
        held["target"].as_str().unwrap_or("?"),
        held["rule"].as_str().unwrap_or("?"),
        held["statement"].as_str().unwrap_or("?")
    ));
    n.check(
        "the ALTER TABLE is held, attributed to payments-ai",
        held["identity"] == "payments-ai"
            && held["statement"]
                .as_str()
                .is_some_and(|s| s.contains("ALTER TABLE cards")),
    );
    n.command(&format!("sluice approvals approve {id} --api http://{API}"));
    let out = d.sluice_as(
        &bob,
        &[
            "approvals",
            "approve",
            &id,
            "--api",
            &format!("http://{API}"),
        ],
    );
    n.output(
        &(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr)),
    );
    let finished = wait_for(Duration::from_secs(30), || agent.try_wait().ok().flatten());
    let mut said = String::new();
    if let Some(mut stdout) = agent.stdout.take() {
        let _ = stdout.read_to_string(&mut said);
    }
    if finished.is_none() {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    n.say("The agent, meanwhile:");
    n.output(&said);
    let column = d.pg.sql(
        "select count(*) from information_schema.columns where table_name = 'cards' and column_name = 'last_reviewed'",
    );
    n.check(
        "approved by bob, the migration ran; the agent never knew why it waited",
        out.status.success()
            && finished.is_some_and(|s| s.success())
            && said.contains("migration applied")
            && column.trim() == "1",
    );
}

/// Known bypass classes, tried by the legacy job host.
fn bypasses(n: &mut Narrator, d: &DemoLab) {
    n.step("A few known bypasses, tried by the legacy job host: none gets a card number out");
    let attempts: [(&str, &str, &str); 10] = [
        (
            "pg",
            "cast and concatenate",
            "select holder, pan::text || '' as x from cards",
        ),
        ("pg", "reverse it", "select reverse(pan) from cards"),
        (
            "pg",
            "base64 it",
            "select encode(convert_to(pan, 'UTF8'), 'base64') from cards",
        ),
        (
            "pg",
            "hide it behind a CTE alias",
            "with t as (select pan as note from cards) select note from t",
        ),
        (
            "pg",
            "probe it in WHERE",
            "select holder from cards where pan like '4111%'",
        ),
        ("pg", "make the error echo it", "select pan::int from cards"),
        ("pg", "copy the table out", "copy cards to stdout"),
        (
            "my",
            "executable comment",
            "SELECT /*!50000 pan */ FROM cards",
        ),
        ("my", "hex it", "SELECT HEX(pan) FROM cards"),
        (
            "my",
            "write it to a file",
            "SELECT pan FROM cards INTO OUTFILE '/tmp/cards.txt'",
        ),
    ];
    let all_pans: Vec<&str> = PANS.iter().chain(mariadb::PANS.iter()).copied().collect();
    let mut clean = 0;
    for (db, what, sql) in attempts {
        let (ok, text) = if db == "pg" {
            d.psql(&d.agent_b.ns, sql)
        } else {
            d.mysql(&d.agent_b.ns, sql)
        };
        let outcome = if ok {
            // The first row: psql -A prints a header line first, mysql
            // --table a border, the header and a border.
            let first = text
                .lines()
                .nth(if db == "pg" { 1 } else { 3 })
                .unwrap_or("")
                .trim();
            format!("masked   {}", shorten(first, 60))
        } else {
            let reason = text
                .lines()
                .find(|l| l.contains("ERROR"))
                .unwrap_or(text.trim())
                .trim();
            format!("refused  {}", shorten(reason, 60))
        };
        let leaked = leaks::leak(&text, &all_pans);
        if leaked.is_none() {
            clean += 1;
        }
        println!(
            "      {:<28} {:<6} {}",
            what,
            if db == "pg" { "psql" } else { "mysql" },
            n.paint(if leaked.is_none() { "33" } else { "31" }, &outcome)
        );
        if let Some(l) = leaked {
            n.say(&format!("  LEAKED: {l}"));
        }
    }
    n.check(
        &format!(
            "{clean} of {} bypass attempts got no card number out",
            attempts.len()
        ),
        clean == attempts.len(),
    );
    let file = d.mariadb.sql("SELECT LOAD_FILE('/tmp/cards.txt') IS NULL");
    n.check(
        "nothing was written to a file on the database host",
        file.trim().ends_with('1'),
    );
}

/// Which of `pans` appear in `text` whole, reversed, in hex or in base64
/// (the store's own numbers, timestamps among them, are not card numbers;
/// [`leaks::leak`]'s any-Luhn-run rule is for what agents receive).
fn pan_forms(text: &str, pans: &[&str]) -> Vec<String> {
    pans.iter()
        .filter(|pan| {
            let reversed: String = pan.chars().rev().collect();
            [
                pan.to_string(),
                reversed,
                leaks::hex(pan),
                leaks::base64(pan),
            ]
            .iter()
            .any(|form| text.contains(form.as_str()))
        })
        .map(|p| p.to_string())
        .collect()
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max - 1).collect::<String>() + "…"
    }
}

/// kill -9 of sluice: protected flows fail closed; a restart recovers.
fn crash(n: &mut Narrator, d: &mut DemoLab) {
    n.step("sluice crashes (kill -9): protected flows fail closed, never around it");
    d.daemon.kill9();
    let before =
        d.pg.log_text()
            .matches(&format!("host={} ", d.agent_b.ip))
            .count();
    n.command("psql … -c 'select 1'   # while sluice is down");
    let (ok, text) = d.psql(&d.agent_b.ns, "select 1");
    n.output(&text);
    let after =
        d.pg.log_text()
            .matches(&format!("host={} ", d.agent_b.ip))
            .count();
    n.check(
        "the agent's attempt failed and never reached the database",
        !ok && before == after,
    );
    d.daemon.restart(None);
    let (ok, text) = d.psql(&d.agent_b.ns, "select 'back' as status");
    n.check(
        "sluice restarted, replaced the stale programs, the agent works again",
        ok && text.contains("back") && d.daemon.log_text().contains("previous run"),
    );
}

/// The auditor's part: list, export, verify, tamper, replay.
fn auditor(n: &mut Narrator, d: &DemoLab) -> Vec<(String, String)> {
    n.step("An auditor exports, verifies and replays the record");
    let text = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    n.command("sluice audit list");
    let out = d.audit(&["list"]);
    n.output(&text(&out));

    let export = d.scratch.path("evidence.jsonl");
    let export_s = export.to_str().unwrap();
    n.command("sluice audit export -o evidence.jsonl");
    let out = d.audit(&["export", "-o", export_s]);
    n.output(&text(&out));
    let exported = std::fs::read_to_string(&export).unwrap_or_default();
    let all_pans: Vec<&str> = PANS.iter().chain(mariadb::PANS.iter()).copied().collect();
    n.check(
        "the export holds every session and no card number",
        out.status.success()
            && exported.contains("payments-ai")
            && exported.contains("nightly-report")
            && pan_forms(&exported, &all_pans).is_empty(),
    );

    n.say("The export verifies on its own (checkpoints and the public key travel with it);");
    n.say("--live: the daemon is still writing, so events after the last checkpoint are unsigned.");
    n.command("sluice audit verify --export evidence.jsonl --live");
    let out = d.audit(&["verify", "--export", export_s, "--live"]);
    n.output(&text(&out));
    let verified = out.status.success();
    n.check("the export verifies", verified);

    n.say("Someone edits one statement in a copy — the refused DELETE now reads as a SELECT:");
    let tampered = d.scratch.path("tampered.jsonl");
    let edited = exported.replacen("delete from cards", "select 1 from cards", 1);
    let _ = std::fs::write(&tampered, &edited);
    n.command("sluice audit verify --export tampered.jsonl --live");
    let out = d.audit(&["verify", "--export", tampered.to_str().unwrap(), "--live"]);
    n.output(&text(&out));
    n.check(
        "the tampered copy fails verification, naming the edited event",
        edited != exported && out.status.code() == Some(1),
    );

    // The session that held the migration.
    let listed = d.audit(&["list", "--json", "--identity", "payments-ai"]);
    let migrate = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|s| s["session"].as_u64())
        .find(|id| text(&d.audit(&["show", &id.to_string()])).contains("ALTER TABLE"));
    let id = migrate.map(|i| i.to_string()).unwrap_or_default();
    n.command(&format!("sluice audit replay {id}"));
    let out = d.audit(&["replay", &id]);
    let replay = text(&out);
    n.output(&replay);
    n.check(
        "the replay shows the held migration, its approval by bob, and its outcome",
        out.status.success() && replay.contains("ALTER TABLE") && replay.contains("bob"),
    );

    let out = d.audit(&["stats"]);
    let stats = text(&out);
    n.command("sluice audit stats");
    n.output(&stats);
    stats
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            let v = v.trim();
            (!k.is_empty() && !v.is_empty() && k != "store").then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}
