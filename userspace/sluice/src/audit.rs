//! `sluice audit`: the auditor's commands. They open the store read-only
//! (a RocksDB secondary instance), so they work on a live store while the
//! daemon records, and on a copied store directory.
use std::{
    fs::File,
    io::{BufReader, BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use sluice_config::Config;
use sluice_store::{
    PublicKey, SessionSummary,
    codec::now_us,
    export,
    read::{Filter, Reader, RecordedEvent},
    time::{parse as parse_time, rfc3339},
    verify::Report,
};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// List recorded sessions, oldest first.
    ///
    /// Filters combine: `--identity host:10.0.0.2 --since 7d --decision deny`
    /// lists that agent's sessions of the last week that had a refused
    /// statement.
    List {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per session instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session: who, where, and every event.
    Show {
        #[command(flatten)]
        store: StoreArg,
        /// Session id (from `audit list`).
        id: u64,
        /// Print the stored events as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Export sessions with the material to verify them.
    ///
    /// JSONL (the default) carries the checkpoints and public key, so
    /// `sluice audit verify --export FILE` checks it with nothing else;
    /// CSV is one row per event, for spreadsheets. A progress line is shown
    /// on a terminal.
    Export {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Verify a store, or an export, against the checkpoint public key.
    ///
    /// Detects any edited, deleted, reordered, inserted or truncated event
    /// and any removed or altered checkpoint, and names the first bad
    /// event. Exit status 0: intact; 1: tampering found.
    Verify {
        #[command(flatten)]
        store: StoreArg,
        /// Verify this JSONL export instead of a store.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// The public key you trust (`sluice audit key` prints it; the
        /// daemon writes it to `<signing_key>.pub`). Without it, the key
        /// kept inside the store or export is used, and the report says so.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The daemon is still writing this store (or the export was taken
        /// from a running daemon): events newer than the last checkpoint
        /// (at most checkpoint_interval_ms old) are accepted unsigned. A
        /// closed or crash-recovered store has none, so without this flag
        /// they fail verification: they mean newer checkpoints were removed.
        #[arg(long)]
        live: bool,
    },
    /// Replay a session as it happened, with its timing.
    Replay {
        #[command(flatten)]
        store: StoreArg,
        /// Session id.
        id: u64,
        /// Wait between events as long as the session did.
        #[arg(long)]
        real_time: bool,
        /// With --real-time: play this many times faster.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// Counts: sessions, events, decisions, checkpoints, disk use.
    Stats {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Print the checkpoint public key and its fingerprint.
    Key {
        #[command(flatten)]
        store: StoreArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line, verifiable on its own.
    Jsonl,
    /// One row per event.
    Csv,
}

/// Where the store is.
#[derive(Args)]
pub struct StoreArg {
    /// The store directory. Default: `[store] path` of --config, else
    /// /var/lib/sluice/store.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The daemon's configuration, to find the store.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl StoreArg {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.store {
            return Ok(p.clone());
        }
        if let Some(c) = &self.config {
            return Ok(Config::load(c)?.store.path);
        }
        Ok(sluice_config::StoreConfig::default().path)
    }

    fn open(&self) -> anyhow::Result<Reader> {
        Ok(Reader::open(&self.path()?)?)
    }
}

/// Which sessions.
#[derive(Args)]
pub struct FilterArgs {
    /// Workload identity (e.g. host:10.0.0.2, uid:1001).
    #[arg(long)]
    identity: Option<String>,
    /// Target name.
    #[arg(long)]
    target: Option<String>,
    /// Started at or after: 2026-11-22, 2026-11-22T10:00:00Z, or an age (15m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Started before (same forms).
    #[arg(long)]
    until: Option<String>,
    /// Had a statement with this decision.
    #[arg(long, value_parser = ["deny", "approve"])]
    decision: Option<String>,
    /// Only this session (repeatable).
    #[arg(long = "session", value_name = "ID")]
    sessions: Vec<u64>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
        let now = now_us();
        let time = |t: &Option<String>| {
            t.as_deref()
                .map(|t| parse_time(t, now))
                .transpose()
                .map_err(anyhow::Error::msg)
        };
        Ok(Filter {
            identity: self.identity.clone(),
            target: self.target.clone(),
            since_us: time(&self.since)?,
            until_us: time(&self.until)?,
            decision: self.decision.clone(),
            sessions: (!self.sessions.is_empty()).then(|| self.sessions.clone()),
        })
    }
}

pub fn run(cmd: AuditCommand) -> ExitCode {
    match dispatch(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            ExitCode::from(2)
        }
    }
}

fn dispatch(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::List {
            store,
            filter,
            json,
        } => list(&store.open()?, &filter.filter()?, json),
        AuditCommand::Show { store, id, json } => show(&store.open()?, id, json),
        AuditCommand::Export {
            store,
            filter,
            format,
            output,
        } => export_cmd(&store.open()?, &filter.filter()?, format, output.as_deref()),
        AuditCommand::Verify {
            store,
            export,
            key,
            live,
        } => verify(&store, export.as_deref(), key.as_deref(), live),
        AuditCommand::Replay {
            store,
            id,
            real_time,
            speed,
        } => replay(&store.open()?, id, real_time.then_some(speed)),
        AuditCommand::Stats { store } => stats(&store.open()?),
        AuditCommand::Key { store } => {
            let reader = store.open()?;
            let key = reader
                .public_key()?
                .context("the store holds no public key (it was never opened by the daemon)")?;
            println!("{}", key.to_text());
            println!("fingerprint {}", key.fingerprint());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ended(s: &SessionSummary) -> String {
    match (&s.end, s.ended_us) {
        (Some(e), _) => e.clone(),
        (None, _) => "open".into(),
    }
}

fn list(reader: &Reader, filter: &Filter, json: bool) -> anyhow::Result<ExitCode> {
    let sessions = reader.sessions(filter)?;
    let mut out = std::io::stdout().lock();
    if json {
        for s in &sessions {
            writeln!(out, "{}", serde_json::to_string(s)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    out.write_all(table(&sessions).as_bytes())?;
    writeln!(out, "{} session(s)", sessions.len())?;
    Ok(ExitCode::SUCCESS)
}

/// `audit list`'s table: columns as wide as their longest value (a target
/// name longer than its header would push the rest of its row out of line).
fn table(sessions: &[SessionSummary]) -> String {
    use std::fmt::Write as _;
    let width = |header: &str, value: &dyn Fn(&SessionSummary) -> usize| {
        sessions
            .iter()
            .map(value)
            .max()
            .unwrap_or(0)
            .max(header.len())
    };
    let wi = width("IDENTITY", &|s| s.identity.chars().count());
    let wt = width("TARGET", &|s| s.target.chars().count());
    let wu = width("USER", &|s| {
        s.user.as_deref().map_or(1, |u| u.chars().count())
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8}  {:<27} {:<wi$} {:<wt$} {:<wu$} {:>6} {:>6}  END",
        "SESSION", "STARTED (UTC)", "IDENTITY", "TARGET", "USER", "STMTS", "DENIED"
    );
    for s in sessions {
        let _ = writeln!(
            out,
            "{:>8}  {:<27} {:<wi$} {:<wt$} {:<wu$} {:>6} {:>6}  {}",
            s.session,
            rfc3339(s.started_us),
            s.identity,
            s.target,
            s.user.as_deref().unwrap_or("-"),
            s.statements,
            s.denied,
            ended(s)
        );
    }
    out
}

fn events(reader: &Reader, id: u64) -> anyhow::Result<(SessionSummary, Vec<RecordedEvent>)> {
    let summary = reader
        .session(id)?
        .with_context(|| format!("no session {id} in {}", reader.path().display()))?;
    let events = reader.events(id).collect::<Result<Vec<_>, _>>()?;
    Ok((summary, events))
}

fn show(reader: &Reader, id: u64, json: bool) -> anyhow::Result<ExitCode> {
    let (summary, events) = events(reader, id)?;
    let mut out = std::io::stdout().lock();
    if json {
        for e in &events {
            writeln!(out, "{}", String::from_utf8_lossy(&e.body))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "session {id}")?;
    writeln!(out, "  identity  {}", summary.identity)?;
    writeln!(out, "  client    {}", summary.client)?;
    writeln!(out, "  target    {}", summary.target)?;
    writeln!(out, "  started   {}", rfc3339(summary.started_us))?;
    writeln!(out, "  ended     {}", ended(&summary))?;
    let start = events.first().map_or(0, |e| e.time_us);
    for e in &events {
        writeln!(out, "{}", describe(e, start))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One event as a line: seq, offset from the session start, what happened.
fn describe(e: &RecordedEvent, start_us: u64) -> String {
    let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let at = format!(
        "{:>4} +{:>9.3}s",
        e.seq,
        e.time_us.saturating_sub(start_us) as f64 / 1e6
    );
    let what = match s("kind") {
        "session_start" => {
            let facts = v.get("facts").map(|f| f.to_string()).unwrap_or_default();
            format!(
                "start    {} as {} to {} ({}) user={} db={} client_tls={} upstream_tls={} auth={} facts={facts}",
                s("identity"),
                s("protocol"),
                s("target"),
                s("original"),
                s("user"),
                s("database"),
                v["client_tls"],
                v["upstream_tls"],
                s("auth"),
            )
        }
        "statement" => {
            let params = v
                .get("params")
                .map(|p| format!(" params={p}"))
                .unwrap_or_default();
            let rule = v
                .get("rule")
                .and_then(|r| r.as_str())
                .map(|r| format!(" rule={r}"))
                .unwrap_or_default();
            format!(
                "{:<8} [{}] {}: {}{params}{rule}",
                s("decision").to_uppercase(),
                s("protocol"),
                "sql",
                s("text")
            )
        }
        "outcome" => {
            let stmt = v
                .get("statement")
                .and_then(|x| x.as_u64())
                .map_or("-".into(), |n| format!("#{n}"));
            let detail = match s("status") {
                "error" => format!("{} {}", s("sqlstate"), s("message")),
                _ => s("tag").to_owned(),
            };
            let result = v
                .get("result")
                .map(|r| {
                    let masked = r["masked"]
                        .as_array()
                        .filter(|m| !m.is_empty())
                        .map(|m| {
                            let parts: Vec<String> = m
                                .iter()
                                .map(|p| format!("{} x{}", p[0].as_str().unwrap_or("?"), p[1]))
                                .collect();
                            format!(", masked {}", parts.join(", "))
                        })
                        .unwrap_or_default();
                    format!(
                        " result: {} rows, {} bytes, columns {}{masked}",
                        r["rows"], r["bytes"], r["columns"]
                    )
                })
                .unwrap_or_default();
            format!(
                "outcome  {stmt} {} {detail} in {} us{result}",
                s("status"),
                v["duration_us"]
            )
        }
        "session_end" => format!(
            "end      {} (statements {}, denied {}, {} bytes up, {} bytes down)",
            s("reason"),
            v["statements"],
            v["denied"],
            v["bytes_up"],
            v["bytes_down"]
        ),
        other => format!("{other}: {}", String::from_utf8_lossy(&e.body)),
    };
    format!("{at}  {what}")
}

fn replay(reader: &Reader, id: u64, pace: Option<f64>) -> anyhow::Result<ExitCode> {
    let (summary, events) = events(reader, id)?;
    if let Some(speed) = pace
        && !(speed > 0.0 && speed.is_finite())
    {
        bail!("--speed must be a positive number");
    }
    println!(
        "replaying session {id}: {} to {} from {}, started {}",
        summary.identity,
        summary.target,
        summary.client,
        rfc3339(summary.started_us)
    );
    let start = events.first().map_or(0, |e| e.time_us);
    let mut prev = start;
    let mut out = std::io::stdout().lock();
    for e in &events {
        if let Some(speed) = pace {
            let gap = e.time_us.saturating_sub(prev) as f64 / 1e6 / speed;
            out.flush()?;
            std::thread::sleep(Duration::from_secs_f64(gap.min(3600.0)));
        }
        prev = e.time_us;
        writeln!(out, "{}", describe(e, start))?;
    }
    Ok(ExitCode::SUCCESS)
}

struct Bar {
    on: bool,
    last: Instant,
}

impl export::Progress for Bar {
    fn session_done(&mut self, sessions: u64, total: u64, events: u64) {
        if self.on && (self.last.elapsed() >= Duration::from_millis(200) || sessions == total) {
            self.last = Instant::now();
            let width = 30;
            let filled = (sessions * width).checked_div(total).unwrap_or(width) as usize;
            eprint!(
                "\r[{}{}] {sessions}/{total} sessions, {events} events",
                "#".repeat(filled),
                " ".repeat(width as usize - filled)
            );
            if sessions == total {
                eprintln!();
            }
        }
    }
}

fn export_cmd(
    reader: &Reader,
    filter: &Filter,
    format: ExportFormat,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let mut bar = Bar {
        on: std::io::stderr().is_terminal(),
        last: Instant::now(),
    };
    let mut sink: Box<dyn Write> = match output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let written = match format {
        ExportFormat::Jsonl => export::jsonl(reader, filter, &mut sink, &mut bar)?,
        ExportFormat::Csv => export::csv(reader, filter, &mut sink, &mut bar)?,
    };
    drop(sink);
    eprintln!(
        "exported {} session(s), {} event(s){}",
        written.sessions,
        written.events,
        output.map_or(String::new(), |p| format!(" to {}", p.display()))
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(
    store: &StoreArg,
    export: Option<&Path>,
    key: Option<&Path>,
    live: bool,
) -> anyhow::Result<ExitCode> {
    let trusted = key.map(PublicKey::read).transpose()?;
    let (report, used, what) = match export {
        Some(path) => {
            let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let (report, info) = export::verify_jsonl(&mut BufReader::new(f), trusted)
                .map_err(anyhow::Error::msg)?;
            (
                report,
                trusted.or(info.public_key),
                format!("export {}", path.display()),
            )
        }
        None => {
            let reader = store.open()?;
            let stored = reader.public_key()?;
            let Some(k) = trusted.or(stored) else {
                bail!("no public key: the store holds none; pass --key");
            };
            let report = export::verify_store(&reader, k)?;
            (
                report,
                Some(k),
                format!("store {}", reader.path().display()),
            )
        }
    };
    let fingerprint = used.map_or("?".into(), |k| k.fingerprint());
    if trusted.is_none() {
        println!(
            "note: verified with the public key found inside the {what} (fingerprint {fingerprint}); \
             pass --key with the key you hold to rule out a re-signed copy"
        );
    }
    let mut report = report;
    if report.unsigned_events > 0 && !live {
        report.problems.push(sluice_store::verify::Problem {
            session: None,
            seq: None,
            what: format!(
                "{} event(s) are newer than the last checkpoint: a closed store has none, so newer checkpoints were removed (pass --live if the daemon is writing this store)",
                report.unsigned_events
            ),
        });
    }
    print_report(&report, &what, &fingerprint);
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(r: &Report, what: &str, fingerprint: &str) {
    println!(
        "{what}: {} checkpoint(s), {} session(s), {} event(s), {} expired session(s), key {fingerprint}",
        r.checkpoints, r.sessions, r.events, r.expired_sessions
    );
    if let Some((n, time_us, hash)) = &r.newest {
        println!(
            "newest checkpoint: #{n} at {}, hash {hash} (compare with the daemon's \"audit checkpoint signed\" log lines)",
            rfc3339(*time_us)
        );
    }
    if r.unsigned_events > 0 {
        println!(
            "note: {} event(s) are newer than the last checkpoint: their chains check, no signature covers them yet",
            r.unsigned_events
        );
    }
    if r.outside_scope > 0 {
        println!(
            "note: a filtered export: {} signed session(s) are outside it and were not checked",
            r.outside_scope
        );
    }
    if r.ok() {
        println!("verified: intact");
        return;
    }
    println!("TAMPERED: {} problem(s)", r.problems.len());
    println!("first bad: {}", r.problems[0]);
    for p in r.problems.iter().skip(1).take(19) {
        println!("  also: {p}");
    }
    if r.problems.len() > 20 {
        println!("  … and {} more", r.problems.len() - 20);
    }
}

fn stats(reader: &Reader) -> anyhow::Result<ExitCode> {
    let sessions = reader.sessions(&Filter::default())?;
    let open = reader.open_sessions()?;
    let statements: u64 = sessions.iter().map(|s| s.statements).sum();
    let denied: u64 = sessions.iter().map(|s| s.denied).sum();
    let events: u64 = sessions.iter().map(|s| u64::from(s.events)).sum();
    let mut checkpoints = 0u64;
    let mut last = None;
    for c in reader.checkpoints() {
        let c = c?;
        checkpoints += 1;
        last = serde_json::from_slice::<sluice_store::checkpoint::Checkpoint>(&c.body).ok();
    }
    println!("store        {}", reader.path().display());
    println!(
        "sessions     {} ({} with no end recorded: open, or cut off by a crash)",
        sessions.len(),
        open.len()
    );
    println!("events       {events} in ended sessions");
    println!("statements   {statements} allowed, {denied} denied");
    if let (Some(first), Some(newest)) = (sessions.first(), sessions.last()) {
        println!(
            "span         {} .. {}",
            rfc3339(first.started_us),
            rfc3339(newest.started_us)
        );
    }
    match last {
        Some(c) => println!(
            "checkpoints  {checkpoints}, newest #{} at {} counting {} events",
            c.n,
            rfc3339(c.time_us),
            c.global
        ),
        None => println!("checkpoints  none"),
    }
    println!(
        "disk         {:.1} MiB",
        reader.disk_bytes() as f64 / 1048576.0
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target name longer than its header (`payments-mariadb`) and a
    /// session with no user: every row's end reason starts under `END`.
    #[test]
    fn the_session_list_lines_up_whatever_the_names() {
        let session = |id, identity: &str, target: &str, user: Option<&str>| SessionSummary {
            session: id,
            identity: identity.into(),
            target: target.into(),
            user: user.map(Into::into),
            end: Some("client terminated".into()),
            ..SessionSummary::default()
        };
        let text = table(&[
            session(1, "nightly-report", "payments-pg", Some("agent")),
            session(
                2,
                "payments-ai-with-a-long-name",
                "payments-mariadb",
                Some("agent"),
            ),
            session(3, "sluice", "admin", None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        let end = lines[0].find("END").unwrap();
        for line in &lines[1..] {
            assert_eq!(line.find("client terminated"), Some(end), "{text}");
        }
    }
}
