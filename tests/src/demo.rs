//! `cargo xtask demo`: the story of transparent interception, told by a real
//! lab, checked as it goes. Non-interactive; exits non-zero if any step of
//! the story does not hold.
use std::{io::IsTerminal, time::Duration};

use crate::{labctl, postgres::conninfo, scenario};

struct Narrator {
    color: bool,
    results: Vec<(String, bool)>,
}

impl Narrator {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn step(&self, n: u32, total: u32, text: &str) {
        println!(
            "\n{} {}",
            self.paint("1;36", &format!("[{n}/{total}]")),
            self.paint("1", text)
        );
    }
    fn say(&self, text: &str) {
        for line in text.lines() {
            println!("      {line}");
        }
    }
    fn check(&mut self, what: &str, ok: bool) {
        let mark = if ok {
            self.paint("32", "✓")
        } else {
            self.paint("31", "✗")
        };
        println!("      {mark} {what}");
        self.results.push((what.to_owned(), ok));
    }
}

pub fn run(keep: bool) -> anyhow::Result<()> {
    let mut n = Narrator {
        color: std::io::stdout().is_terminal(),
        results: Vec::new(),
    };
    println!(
        "{}",
        n.paint(
            "1",
            "sluice demo: an unmodified agent's database traffic, intercepted by the kernel"
        )
    );
    const T: u32 = 6;

    n.step(1, T, "Building the lab: agent host ─ gateway ─ database host (PostgreSQL 15), in network namespaces");
    let mut r = scenario::start("demo", 40, "");
    n.say(&format!(
        "agent {}  →  gateway {} | {}  →  database {}:5432",
        r.lab.agent_ip, r.lab.gw_agent_ip, r.lab.gw_db_ip, r.lab.db_ip
    ));
    n.check("lab built, PostgreSQL up", true);

    n.step(2, T, "sluice runs on the gateway: tc ingress program + fwmark policy routing, nothing on the agent");
    let opened = r.daemon.log_text();
    n.say(
        opened
            .lines()
            .filter(|l| l.contains("attached") || l.contains("protecting"))
            .map(|l| {
                l.split("sluice_intercept::interceptor: ")
                    .last()
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    );
    n.check(
        "interception attached",
        opened.contains("sluice is intercepting"),
    );

    n.step(
        3,
        T,
        "The agent runs psql against the database's own address, exactly as it always has",
    );
    let info = conninfo(&r.lab.db_ip, 5432);
    n.say(&format!(
        "$ psql \"host={} …\" -c \"select inet_client_addr(), holder from cards\"",
        r.lab.db_ip
    ));
    let out = r.lab.agent.try_run(
        &[
            "psql",
            "-X",
            "-At",
            &info,
            "-c",
            "select host(inet_client_addr()), holder from cards order by id",
        ],
        Duration::from_secs(15),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    n.say(&stdout);
    let via_gateway = out.status.success()
        && stdout
            .lines()
            .all(|l| l.starts_with(&format!("{}|", r.lab.gw_db_ip)));
    n.say(&format!(
        "The database saw {} (the gateway) as its client, not the agent's {}.",
        r.lab.gw_db_ip, r.lab.agent_ip
    ));
    n.check("psql intercepted transparently", via_gateway);
    let log = r.daemon.log_text();
    let session: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("session opened") || l.contains("session closed"))
        .collect();
    n.say("sluice's record of it:");
    for l in session.iter().take(2) {
        n.say(&format!(
            "  {}",
            l.split("sluice_relay::session: ").last().unwrap_or(l)
        ));
    }
    n.check(
        "session logged with agent, original destination, interface and MAC",
        session
            .iter()
            .any(|l| l.contains(&format!("client={}:", r.lab.agent_ip)) && l.contains("mac=")),
    );

    n.step(4, T, "A Python agent (psycopg2), also unmodified");
    let script = format!(
        "import psycopg2\nc = psycopg2.connect({info:?})\ncur = c.cursor()\ncur.execute('select count(*) from cards')\nprint(cur.fetchone()[0], 'cards read through sluice')\n"
    );
    let out = r.lab.agent.try_run(
        &["/usr/bin/python3", "-c", &script],
        Duration::from_secs(15),
    );
    n.say(String::from_utf8_lossy(&out.stdout).trim());
    n.check("psycopg2 intercepted transparently", out.status.success());

    n.step(
        5,
        T,
        "sluice crashes (kill -9): protected flows fail closed, never around it",
    );
    r.daemon.kill9();
    let direct_before =
        r.pg.log_text()
            .matches(&format!("host={}", r.lab.agent_ip))
            .count();
    let out = r.lab.agent.try_run(
        &["psql", "-X", "-At", &info, "-c", "select 1"],
        Duration::from_secs(10),
    );
    n.say(String::from_utf8_lossy(&out.stderr).trim());
    let failed_closed = !out.status.success()
        && r.pg
            .log_text()
            .matches(&format!("host={}", r.lab.agent_ip))
            .count()
            == direct_before;
    n.check(
        "agent's attempt failed and never reached the database",
        failed_closed,
    );
    r.daemon.restart(None);
    let out = r.lab.agent.try_run(
        &["psql", "-X", "-At", &info, "-c", "select 'back'"],
        Duration::from_secs(15),
    );
    n.check(
        "sluice restarted, replaced the stale programs, agent works again",
        out.status.success() && r.daemon.log_text().contains("previous run"),
    );

    if keep {
        println!();
        labctl::print_howto(&r);
        return labctl::keep(r);
    }

    n.step(
        6,
        T,
        "sluice stops cleanly: no program, pin or routing rule is left behind",
    );
    let status = r.daemon.stop();
    let rules = r.lab.gw.run(&["ip", "rule", "show"]);
    let tc = r
        .lab
        .gw
        .run(&["bpftool", "net", "show", "dev", &r.lab.gw_agent_if]);
    n.check(
        "clean stop leaves nothing behind",
        status.success() && !rules.contains("fwmark") && !tc.contains("sluice"),
    );

    println!("\n{}", n.paint("1", "Summary"));
    println!("  {:<72} result", "check");
    let mut all = true;
    for (what, ok) in &n.results {
        all &= ok;
        println!(
            "  {:<72} {}",
            what,
            if *ok {
                n.paint("32", "PASS")
            } else {
                n.paint("31", "FAIL")
            }
        );
    }
    drop(r);
    if all {
        println!(
            "\n{}",
            n.paint(
                "1;32",
                "demo passed: the kernel steered an unmodified agent through sluice."
            )
        );
        Ok(())
    } else {
        anyhow::bail!("demo failed: see the ✗ steps above")
    }
}
