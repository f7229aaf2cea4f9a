//! `sluice approvals`: decide held statements and manage time-window grants
//! through the admin API (`sluice_admin::client`).
//!
//! Where the API is: `--api URL`, else `[admin] listen` of `--config`
//! (`https` when `[admin] cert` is set; a wildcard address means this host).
//! Who you are: the ID token from `--token-file`, else `$SLUICE_TOKEN`, else
//! the file `sluice login` saved. Output is a table, or the API's JSON with
//! `--json`. Exit status: 0 done; 1 the API refused (403 not allowed, 404
//! no such request or grant, 409 already decided by you); 2 anything else
//! (usage, no token, the API unreachable).

use std::{
    fmt::Write as _,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_admin::{
    api::{ApproveStatus, NewGrant},
    client::{Client, ClientError},
};
use sluice_approvals::{Grant, Request};
use sluice_config::Config;
use sluice_oidc::{default_token_path, load_token};
use sluice_store::time::rfc3339;

/// `sluice approvals` arguments: where the API is and who you are (these
/// go before or after the subcommand), then what to do.
#[derive(Args)]
pub struct ApprovalsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

/// How to reach the admin API.
#[derive(Args)]
struct ApiArgs {
    /// The admin API's URL, e.g. https://sluice.example:9443. Default: from
    /// `[admin] listen` in --config.
    #[arg(long, global = true, value_name = "URL")]
    api: Option<String>,
    /// The daemon's configuration, to find the API when --api is not given.
    #[arg(
        short,
        long,
        global = true,
        value_name = "FILE",
        default_value = "/etc/sluice/sluice.toml"
    )]
    config: PathBuf,
    /// PEM file of the CA that issued the API's certificate (when it is not
    /// publicly trusted).
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The token file `sluice login` wrote. Default: $SLUICE_TOKEN (a raw
    /// token), else $SLUICE_TOKEN_FILE, else ~/.config/sluice/token.json.
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

/// What to do.
#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Statements waiting for approval: who, where, the rule, the full
    /// statement, approvals so far, time left.
    List,
    /// Approve a held statement. With approvers_required > 1 it runs once
    /// enough distinct approvers have said yes. You cannot approve a
    /// statement your own identity runs.
    Approve {
        /// The request's id (from `list`), e.g. apr-1a2b3c-7.
        id: String,
    },
    /// Deny a held statement; its client gets an error carrying the reason.
    Deny {
        /// The request's id.
        id: String,
        /// Why (recorded, and shown to the client).
        #[arg(long)]
        reason: String,
    },
    /// Time-window grants in force.
    Grants,
    /// Let an identity run statements of some classes without approval, for
    /// a while.
    Grant {
        /// The workload identity, exactly (e.g. etl-nightly, host:10.0.0.2).
        #[arg(long)]
        identity: String,
        /// The target's name; `*` for any.
        #[arg(long, default_value = "*")]
        target: String,
        /// A statement class the grant covers (ddl, write, …; `*`: any).
        /// Repeat, or separate with commas.
        #[arg(
            long = "class",
            value_name = "CLASS",
            required = true,
            value_delimiter = ','
        )]
        classes: Vec<String>,
        /// How long: 90s, 30m, 2h, 1h30m, 1d (at most
        /// `[approvals] max_grant_minutes`).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: u64,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// End a grant now.
    Revoke {
        /// The grant's id (from `grants`), e.g. grt-1a2b3c-9.
        grant_id: String,
    },
}

/// Why the command failed, and so its exit status.
#[derive(Debug)]
enum Failure {
    /// The API understood and said no (403, 404, 409): exit 1.
    Refused(String),
    /// Usage, token, configuration or connection trouble: exit 2.
    Trouble(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        if e.is_refusal() {
            Failure::Refused(e.to_string())
        } else {
            Failure::Trouble(e.to_string())
        }
    }
}

/// Runs `sluice approvals …`.
pub fn run(args: ApprovalsArgs) -> ExitCode {
    match dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(e)) => {
            eprintln!("refused: {e}");
            ExitCode::from(1)
        }
        Err(Failure::Trouble(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(args: ApprovalsArgs) -> Result<(), Failure> {
    let ApprovalsArgs { api, command } = args;
    let client = connect(&api)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Trouble(format!("cannot start the async runtime: {e}")))?;
    let json = api.json;
    runtime.block_on(async move {
        match command {
            ApprovalsCommand::List => {
                let list = client.approvals().await?;
                show(json, &list, || requests_table(&list.approvals, now()))
            }
            ApprovalsCommand::Approve { id } => {
                let r = client.approve(&id).await?;
                show(json, &r, || match r.status {
                    ApproveStatus::Approved => format!(
                        "approved {}: the statement runs now (approved by {})\n",
                        r.id,
                        r.approved_by.join(", ")
                    ),
                    ApproveStatus::WaitingForMore => format!(
                        "your approval of {} is recorded ({} of {}); it waits for another approver\n",
                        r.id, r.approvals, r.required
                    ),
                })
            }
            ApprovalsCommand::Deny { id, reason } => {
                let r = client.deny(&id, &reason).await?;
                show(json, &r, || {
                    format!(
                        "denied {}: the client gets an error with your reason\n",
                        r.id
                    )
                })
            }
            ApprovalsCommand::Grants => {
                let list = client.grants().await?;
                show(json, &list, || grants_table(&list.grants, now()))
            }
            ApprovalsCommand::Grant {
                identity,
                target,
                classes,
                duration,
                reason,
            } => {
                let g = client
                    .grant(&NewGrant {
                        identity,
                        target: Some(target),
                        classes,
                        minutes: None,
                        seconds: Some(duration),
                        reason,
                    })
                    .await?;
                show(json, &g, || {
                    format!(
                        "granted {}: {} may run {} on {} until {} ({})\n",
                        g.id,
                        clean(&g.identity),
                        g.classes.join(", "),
                        clean(&g.target),
                        unix_time(g.expires),
                        human_duration(g.expires.saturating_sub(g.created))
                    )
                })
            }
            ApprovalsCommand::Revoke { grant_id } => {
                let r = client.revoke(&grant_id).await?;
                show(json, &r, || {
                    format!(
                        "revoked {}: {} needs approval again\n",
                        r.grant.id,
                        clean(&r.grant.identity)
                    )
                })
            }
        }
    })
}

/// Prints `value` as JSON, or the human text.
fn show<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if json {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::Trouble(format!("cannot print JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", human());
    }
    Ok(())
}

/// A client for the API `args` name, with the caller's token.
fn connect(args: &ApiArgs) -> Result<Client, Failure> {
    let base = api_url(args)?;
    let token = token(args)?;
    let ca = match &args.ca {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            Failure::Trouble(format!("--ca {}: cannot read it: {e}", path.display()))
        })?),
        None => None,
    };
    Client::new(&base, &token, ca.as_deref()).map_err(|e| match (&args.ca, e) {
        (Some(path), ClientError::Setup(m)) if m.contains("CA file") => {
            Failure::Trouble(format!("--ca {}: {m}", path.display()))
        }
        (_, e) => Failure::Trouble(e.to_string()),
    })
}

/// `--api`, else the configuration's `[admin] listen`.
fn api_url(args: &ApiArgs) -> Result<String, Failure> {
    if let Some(url) = &args.api {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let config = Config::load(&args.config).map_err(|e| {
        Failure::Trouble(format!(
            "{e}\n(the configuration is read to find the admin API; pass --api URL instead)"
        ))
    })?;
    let admin = config.admin.ok_or_else(|| {
        Failure::Trouble(format!(
            "{} has no [admin] section, so the daemon serves no admin API; add one, or pass --api URL",
            args.config.display()
        ))
    })?;
    Ok(url_for(admin.listen, admin.cert.is_some()))
}

/// The URL to reach an API listening on `listen`: a wildcard address is
/// reached on this host's loopback.
fn url_for(listen: SocketAddr, tls: bool) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

/// The caller's ID token: `--token-file`, `$SLUICE_TOKEN`, or the login
/// cache. An expired saved token is refused here, with what to do.
fn token(args: &ApiArgs) -> Result<String, Failure> {
    let from_file = |path: PathBuf, explicit: bool| -> Result<String, Failure> {
        let t = load_token(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound && !explicit {
                Failure::Trouble(
                    "you are not signed in: run `sluice login` (or set SLUICE_TOKEN, or pass --token-file)"
                        .into(),
                )
            } else {
                Failure::Trouble(e.to_string())
            }
        })?;
        if t.is_expired() {
            return Err(Failure::Trouble(format!(
                "your token expired at {}: run `sluice login` again",
                unix_time(t.expires_at)
            )));
        }
        Ok(t.id_token)
    };
    if let Some(path) = &args.token_file {
        return from_file(path.clone(), true);
    }
    if let Some(raw) = std::env::var_os("SLUICE_TOKEN") {
        let raw = raw
            .into_string()
            .map_err(|_| Failure::Trouble("SLUICE_TOKEN is not valid UTF-8".into()))?;
        if !raw.trim().is_empty() {
            return Ok(raw.trim().to_owned());
        }
    }
    from_file(default_token_path(), false)
}

/// Parses `90s`, `30m`, `2h`, `1h30m`, `1d` into seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let hint = "expected a duration such as 90s, 30m, 2h, 1h30m or 1d";
    let text = text.trim();
    if text.is_empty() {
        return Err(hint.into());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{text:?}: unknown unit {c:?}; {hint}")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}; {hint}"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!("{text:?}: add a unit; {hint}"));
    }
    if total == 0 {
        return Err(format!("{text:?}: a grant lasts at least one second"));
    }
    Ok(total)
}

/// `1h 30m`, `4m 12s`, `45s`.
fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")];
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if shown.is_empty() {
        "0s".into()
    } else {
        shown.join(" ")
    }
}

/// Time left until `at`, or `now` when it has passed.
fn left(at: u64, now: u64) -> String {
    if at <= now {
        "now".into()
    } else {
        human_duration(at - now)
    }
}

/// Text from the API made safe for a terminal: control characters
/// (escape sequences a workload could put in a statement) are shown
/// escaped rather than interpreted.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Rows padded to their columns' widths.
fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out
}

fn requests_table(requests: &[Request], now: u64) -> String {
    if requests.is_empty() {
        return "no statements are waiting for approval\n".into();
    }
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                clean(&r.submitted.identity),
                clean(&r.submitted.target),
                format!("{}/{}", r.approved_by.len(), r.approvers_required),
                left(r.expires, now),
                clean(&r.submitted.rule),
            ]
        })
        .collect();
    let lines = table(
        &[
            "ID",
            "IDENTITY",
            "TARGET",
            "APPROVALS",
            "EXPIRES IN",
            "RULE",
        ],
        &rows,
    );
    let mut out = String::new();
    let _ = writeln!(out, "{}", lines[0]);
    for (r, line) in requests.iter().zip(&lines[1..]) {
        let s = &r.submitted;
        let _ = writeln!(out, "{line}");
        let mut facts = Vec::new();
        if !s.user.is_empty() {
            facts.push(format!("user {}", clean(&s.user)));
        }
        if !s.database.is_empty() {
            facts.push(format!("database {}", clean(&s.database)));
        }
        if !s.groups.is_empty() {
            facts.push(format!("groups {}", clean(&s.groups.join(", "))));
        }
        if let Some(session) = s.session {
            facts.push(format!("session {session} (`sluice audit show {session}`)"));
        }
        if !facts.is_empty() {
            let _ = writeln!(out, "    {}", facts.join(", "));
        }
        if !s.reason.is_empty() {
            let _ = writeln!(out, "    why held: {}", clean(&s.reason));
        }
        if !r.approved_by.is_empty() {
            let _ = writeln!(out, "    approved by: {}", clean(&r.approved_by.join(", ")));
        }
        let _ = writeln!(out, "    statement:");
        for l in s.statement.lines() {
            let _ = writeln!(out, "      {}", clean(l));
        }
    }
    out
}

fn grants_table(grants: &[Grant], now: u64) -> String {
    if grants.is_empty() {
        return "no grants in force\n".into();
    }
    let rows: Vec<Vec<String>> = grants
        .iter()
        .map(|g| {
            vec![
                g.id.clone(),
                clean(&g.identity),
                clean(&g.target),
                clean(&g.classes.join(",")),
                left(g.expires, now),
                clean(&g.by),
                clean(&g.reason),
            ]
        })
        .collect();
    let mut out = String::new();
    for line in table(
        &[
            "ID", "IDENTITY", "TARGET", "CLASSES", "ENDS IN", "BY", "REASON",
        ],
        &rows,
    ) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// Unix seconds as RFC 3339, without the store's microseconds.
fn unix_time(secs: u64) -> String {
    rfc3339(secs.saturating_mul(1_000_000)).replace(".000000Z", "Z")
}

fn now() -> u64 {
    sluice_approvals::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_approvals::NewRequest;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("90s", Some(90)),
            ("30m", Some(1800)),
            ("2h", Some(7200)),
            ("1h30m", Some(5400)),
            ("1d", Some(86_400)),
            (" 5m ", Some(300)),
            ("30", None),
            ("m", None),
            ("0m", None),
            ("10x", None),
            ("", None),
            ("99999999999999999999d", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), *want, "{text:?}");
        }
        assert_eq!(human_duration(5400), "1h 30m");
        assert_eq!(human_duration(252), "4m 12s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(left(10, 20), "now");
    }

    #[test]
    fn api_url_from_listen() {
        let cases = [
            ("127.0.0.1:9443", false, "http://127.0.0.1:9443"),
            ("0.0.0.0:9443", true, "https://127.0.0.1:9443"),
            ("[::]:9443", true, "https://[::1]:9443"),
            ("10.0.0.1:443", true, "https://10.0.0.1:443"),
        ];
        for (listen, tls, want) in cases {
            assert_eq!(url_for(listen.parse().unwrap(), tls), want);
        }
    }

    #[test]
    fn statements_cannot_drive_the_terminal() {
        assert_eq!(clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        let r = Request {
            id: "apr-1-1".into(),
            submitted: NewRequest {
                identity: "agent".into(),
                target: "pg".into(),
                user: "app".into(),
                database: "shop".into(),
                statement: "DROP TABLE t;\n-- \u{1b}]0;owned\u{7}".into(),
                rule: "policy.rules[0]".into(),
                reason: "ddl".into(),
                ..Default::default()
            },
            created: 100,
            expires: 400,
            approved_by: vec![],
            approvers_required: 2,
        };
        let text = requests_table(&[r], 148);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("apr-1-1"));
        assert!(text.contains("0/2"));
        assert!(text.contains("4m 12s"));
        assert!(text.contains("      DROP TABLE t;"));
        assert!(text.contains("    user app, database shop\n"), "{text}");
        assert_eq!(
            requests_table(&[], 0),
            "no statements are waiting for approval\n"
        );
    }

    #[test]
    fn grant_rows() {
        let g = Grant {
            id: "grt-1-2".into(),
            identity: "agent".into(),
            target: "*".into(),
            classes: vec!["ddl".into(), "write".into()],
            by: "ann".into(),
            reason: "migration".into(),
            created: 0,
            expires: 1800,
        };
        let text = grants_table(&[g], 0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "));
        assert!(
            lines[1].contains("ddl,write") && lines[1].contains("30m"),
            "{text}"
        );
    }

    /// The CLI against a real admin API in process (a fixed-token
    /// authenticator stands in for the OpenID provider), token from a file
    /// as `sluice login` writes it.
    mod against_the_api {
        use std::{
            collections::HashMap,
            path::{Path, PathBuf},
            sync::Arc,
        };

        use clap::Parser;
        use sluice_admin::{AdminState, Authenticate, Principal, auth::AuthFuture};
        use sluice_approvals::{ApprovalsConfig, Broker};
        use sluice_oidc::{Role, TokenSet, save_token};

        use super::*;

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ApprovalsArgs,
        }

        struct Fixed(HashMap<&'static str, Principal>);
        impl Authenticate for Fixed {
            fn authenticate<'a>(&'a self, bearer: &'a str) -> AuthFuture<'a> {
                Box::pin(async move {
                    self.0
                        .get(bearer)
                        .cloned()
                        .ok_or_else(|| "the token has expired".to_owned())
                })
            }
        }

        struct Dir(PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }

        fn token_file(dir: &Path, name: &str, token: &str, expires_at: u64) -> String {
            let path = dir.join(name);
            save_token(
                &path,
                &TokenSet {
                    id_token: token.into(),
                    expires_at,
                    refresh_token: None,
                },
            )
            .unwrap();
            path.display().to_string()
        }

        fn cli(url: &str, token_file: &str, rest: &[&str]) -> Result<(), Failure> {
            let mut argv = vec!["approvals", "--api", url, "--token-file", token_file];
            argv.extend_from_slice(rest);
            dispatch(Cli::try_parse_from(argv).unwrap().args)
        }

        fn refused(r: Result<(), Failure>) -> String {
            match r {
                Err(Failure::Refused(m)) => m,
                Err(Failure::Trouble(m)) => panic!("expected a refusal, got trouble: {m}"),
                Ok(()) => panic!("expected a refusal, got success"),
            }
        }

        fn trouble(r: Result<(), Failure>) -> String {
            match r {
                Err(Failure::Trouble(m)) => m,
                Err(Failure::Refused(m)) => panic!("expected trouble, got a refusal: {m}"),
                Ok(()) => panic!("expected trouble, got success"),
            }
        }

        #[test]
        fn list_approve_deny_grant_revoke() {
            let dir =
                Dir(std::env::temp_dir()
                    .join(format!("sluice-cli-approvals-{}", std::process::id())));
            std::fs::create_dir_all(&dir.0).unwrap();
            let broker = Broker::new(ApprovalsConfig::default());
            let p = |n: &str| Principal {
                name: n.into(),
                roles: vec![Role::Approver],
            };
            let state = AdminState {
                auth: Arc::new(Fixed(HashMap::from([
                    ("tok-ann", p("ann@example.test")),
                    ("tok-agent", p("agent")),
                ]))),
                broker: Some(Arc::clone(&broker)),
                metrics: Arc::new(String::new),
                sessions: Arc::new(|_| serde_json::Value::Null),
                reload: Arc::new(|| Ok(String::new())),
                record: Arc::new(|_| {}),
            };
            let config = sluice_config::AdminConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                cert: None,
                key: None,
            };
            let api = sluice_admin::spawn(&config, state).unwrap();
            let url = api.url();
            let far = now() + 3600;
            let ann = token_file(&dir.0, "ann.json", "tok-ann", far);
            let agent = token_file(&dir.0, "agent.json", "tok-agent", far);

            let ticket = broker.submit(NewRequest {
                identity: "agent".into(),
                target: "pg".into(),
                statement: "DROP TABLE orders".into(),
                classes: vec!["ddl".into()],
                ..Default::default()
            });
            let id = ticket.id().unwrap().to_owned();

            cli(&url, &ann, &["list"]).unwrap();
            cli(&url, &ann, &["--json", "list"]).unwrap();
            let m = refused(cli(&url, &agent, &["approve", &id]));
            assert!(m.contains("separation of duties"), "{m}");
            cli(&url, &ann, &["approve", &id]).unwrap();
            assert!(broker.get(&id).is_none());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            assert!(runtime.block_on(ticket.wait()).allows());
            refused(cli(&url, &ann, &["approve", &id]));
            refused(cli(&url, &ann, &["deny", &id, "--reason", "late"]));

            cli(
                &url,
                &ann,
                &[
                    "grant",
                    "--identity",
                    "agent",
                    "--class",
                    "ddl,write",
                    "--for",
                    "30m",
                    "--reason",
                    "window",
                ],
            )
            .unwrap();
            let grants = broker.grants();
            assert_eq!(grants.len(), 1);
            assert_eq!(grants[0].classes, ["ddl", "write"]);
            assert_eq!(grants[0].expires - grants[0].created, 1800);
            cli(&url, &ann, &["grants"]).unwrap();
            cli(&url, &ann, &["revoke", &grants[0].id]).unwrap();
            refused(cli(&url, &ann, &["revoke", &grants[0].id]));
            // Bad grant terms are usage trouble, not a refusal.
            trouble(cli(
                &url,
                &ann,
                &[
                    "grant",
                    "--identity",
                    "agent",
                    "--class",
                    "ddl",
                    "--for",
                    "30d",
                    "--reason",
                    "x",
                ],
            ));

            // Tokens: expired in the file, or refused by the API.
            let old = token_file(&dir.0, "old.json", "tok-ann", 1);
            let m = trouble(cli(&url, &old, &["list"]));
            assert!(m.contains("expired") && m.contains("sluice login"), "{m}");
            let stale = token_file(&dir.0, "stale.json", "tok-unknown", far);
            let m = trouble(cli(&url, &stale, &["list"]));
            assert!(m.contains("sluice login"), "{m}");
            api.stop();
        }
    }
}
