//! The `sluice` command: the daemon (`run`), host checks (`doctor`),
//! configuration checks (`config check`), policy checks (`policy check`),
//! the auditor's commands
//! (`audit`), signing in (`login`), deciding held statements and grants
//! (`approvals`), workload tokens (`token new`), crash cleanup (`cleanup`)
//! and its own shell completions and man pages (`completions`, `man`).

mod approvals;
mod audit;
mod login;
mod manpages;
mod policy;
mod run;

use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use sluice_config::Config;
use sluice_intercept::doctor;

/// Transparent interception of database traffic.
///
/// sluice sits on a gateway or jump host. eBPF programs steer connections to
/// protected databases into sluice's proxy, so agents keep dialling the
/// address they always used and need no reconfiguration. Protected flows
/// never bypass sluice: while the proxy is down they fail (fail closed).
#[derive(Parser)]
#[command(name = "sluice", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: attach interception, proxy every protected flow.
    ///
    /// Loads the eBPF programs, attaches them as the config says ([gateway]:
    /// tc ingress on the agent-facing interfaces plus fwmark policy routing;
    /// [jump_host]: cgroup connect/getpeername/sockops on the listed cgroups),
    /// pins them under proxy.bpffs_dir, and relays each intercepted
    /// connection to its original destination, logging one line when it
    /// opens and one when it closes. SIGINT/SIGTERM detach everything and
    /// remove every rule and pin. After a crash (kill -9) the pinned programs
    /// keep protected flows failing until the next start replaces them.
    Run {
        /// Configuration file (TOML); see deploy/examples/.
        #[arg(short, long, default_value = "/etc/sluice/sluice.toml")]
        config: PathBuf,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check whether this host can run each interception mode.
    ///
    /// Checks the kernel version, BTF, bpffs, cgroup v2, capabilities and
    /// iproute2, and loads every program into the kernel (without attaching
    /// it) so verifier problems show here. Ends with a one-line verdict;
    /// exits 0 only if both modes are ready.
    Doctor,
    /// Show what sluice has attached and its kernel counters.
    ///
    /// Reads the pinned state under proxy.bpffs_dir, so it works for a
    /// running daemon and after a crash (when the pinned programs are still
    /// failing closed). Counters: steered packets and new flows, drops while
    /// no proxy was listening, dropped fragments, fail-open passes, errors.
    Status {
        /// Configuration file of the daemon to inspect.
        #[arg(short, long, default_value = "/etc/sluice/sluice.toml")]
        config: PathBuf,
    },
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Statement policy: see what a rule set decides, and why.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Recorded sessions: list, show, export, verify, replay, stats.
    ///
    /// Every session through sluice is recorded in the store as a hash
    /// chain of events, with signed checkpoints. These commands read the
    /// store without changing it, also while the daemon runs; `verify`
    /// needs only the public key.
    #[command(subcommand, after_long_help = AUDIT_EXAMPLES)]
    Audit(audit::AuditCommand),
    /// Sign in at the OpenID provider, for `sluice approvals`.
    ///
    /// Uses the device flow of the `[oidc]` section (issuer, client_id): open
    /// the page it prints on any device, enter the code, sign in. The ID
    /// token is verified, then saved mode 0600 (--token-file, else
    /// $SLUICE_TOKEN_FILE, else ~/.config/sluice/token.json).
    #[command(after_long_help = LOGIN_EXAMPLES)]
    Login(login::LoginArgs),
    /// Decide held statements and manage time-window grants.
    ///
    /// Talks to the daemon's admin API (`[admin]`) with your ID token (from
    /// `sluice login`, $SLUICE_TOKEN or --token-file). Approvers and admins
    /// may decide; auditors may list. Exit status: 0 done; 1 refused by the
    /// API (not allowed, no such request or grant, already approved by
    /// you); 2 usage, token or connection trouble.
    #[command(after_long_help = APPROVALS_EXAMPLES)]
    Approvals(approvals::ApprovalsArgs),
    /// Workload tokens for credential injection.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Remove what a crashed daemon left behind (pinned programs, routing
    /// rules) without starting a new one. Protected flows then pass
    /// un-proxied until sluice runs again.
    Cleanup {
        /// Configuration file the crashed daemon used.
        #[arg(short, long, default_value = "/etc/sluice/sluice.toml")]
        config: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// The packages install them; by hand, e.g.
    /// `sluice completions bash > /usr/share/bash-completion/completions/sluice`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages: sluice.1 and one per subcommand
    /// (sluice-run.1, sluice-audit-export.1, ...).
    Man {
        /// Directory to write them to; created if missing.
        #[arg(long)]
        out: PathBuf,
    },
}

const AUDIT_EXAMPLES: &str = "Examples:
  sluice audit list -c /etc/sluice/sluice.toml --since 1d --decision deny
  sluice audit show 42
  sluice audit replay 42 --real-time --speed 10
  sluice audit key > audit.pub            # keep a copy off this host
  sluice audit export --since 2026-01-01 --output q1.jsonl
  sluice audit verify --export q1.jsonl --key audit.pub
  sluice audit verify --live --key audit.pub   # the running daemon's store";

const LOGIN_EXAMPLES: &str = "Examples:
  sluice login                                  # [oidc] of /etc/sluice/sluice.toml
  sluice login -c ./sluice.toml --token-file ~/.sluice-token.json";

const APPROVALS_EXAMPLES: &str = "Examples:
  sluice approvals list
  sluice approvals approve apr-1a2b3c-7
  sluice approvals deny apr-1a2b3c-8 --reason 'not during the freeze'
  sluice approvals grant --identity etl --class ddl --for 30m --reason CHG-1234
  sluice approvals grants
  sluice approvals revoke grt-1a2b3c-9
  sluice approvals list --api https://sluice.example:9443 --ca ops-ca.pem --json
  SLUICE_TOKEN=$(cat id-token) sluice approvals list   # a token from elsewhere";

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a random workload token and print it with its SHA-256.
    ///
    /// Give the token to the workload (it sends it as its database password,
    /// over TLS) and put the `token_sha256 = ...` line in that credential's
    /// entry of the secrets file. sluice stores only the hash.
    New,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and validate a configuration file; errors name the key.
    ///
    /// Also loads every file the configuration names (TLS certificates and
    /// keys, CA bundles, the secrets file, checking it is root-only), as
    /// `sluice run` would before attaching anything.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines with key=value fields.
    Text,
    /// One JSON object per line.
    Json,
}

/// 32 random bytes from the kernel, as 64 hex digits.
fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. }) {
        // A command's output piped into `head` ends quietly, as other CLI
        // tools do; the daemon keeps SIGPIPE ignored (a closed client
        // socket is an error to handle, not a reason to die).
        default_sigpipe();
    }
    match cli.command {
        Command::Run { config, log_format } => {
            init_tracing(log_format);
            match run::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let message = error_chain(&e);
                    tracing::error!("{message}");
                    eprintln!("sluice: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Doctor => doctor_cmd(),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Login(args) => login::run(args),
        Command::Approvals(args) => approvals::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Status { config } => match Config::load(&config) {
            Ok(c) => match sluice_intercept::Interceptor::status(&c) {
                None => {
                    println!(
                        "not attached: nothing pinned under {}",
                        c.proxy.bpffs_dir.display()
                    );
                    ExitCode::from(3)
                }
                Some(sluice_intercept::Status { links, counters }) => {
                    println!(
                        "attached ({} pinned links under {}):",
                        links.len(),
                        c.proxy.bpffs_dir.display()
                    );
                    for l in links {
                        println!("  {l}");
                    }
                    println!("counters:");
                    for (name, value) in counters {
                        println!("  {name:<28} {value}");
                    }
                    ExitCode::SUCCESS
                }
            },
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Token(TokenCommand::New) => match new_token() {
            Ok(token) => {
                println!("token:        {token}");
                println!(
                    "secrets file: token_sha256 = \"{}\"",
                    sluice_pgproxy::token_hash(&token)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: reading /dev/urandom: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Config(ConfigCommand::Check { file }) => match Config::load(&file)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                sluice_relay::RelaySettings::from_config(&c)
                    .map(|_| c)
                    .map_err(|e| e.to_string())
            }) {
            Ok(c) => {
                println!("{}: ok", file.display());
                println!(
                    "  gateway: {}",
                    c.gateway.as_ref().map_or("off".into(), |g| format!(
                        "on, interfaces {}",
                        g.interfaces.join(", ")
                    ))
                );
                println!(
                    "  jump host: {}",
                    c.jump_host.as_ref().map_or("off".into(), |j| format!(
                        "on, cgroups {}",
                        j.cgroups
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                );
                for t in &c.targets {
                    println!(
                        "  target: {t}, protocol {:?}, auth {:?}, upstream TLS {:?}",
                        t.protocol, t.auth, t.upstream_tls
                    );
                }
                println!(
                    "  client TLS: {}",
                    c.tls
                        .as_ref()
                        .map_or("off (SSLRequest answered N)".into(), |t| format!(
                            "{}{}",
                            t.cert.display(),
                            if t.require {
                                ", required"
                            } else {
                                ", optional"
                            }
                        ))
                );
                println!(
                    "  policy: {} rule(s), {} deny pattern(s), {} row limit(s), default {}",
                    c.policy.rules.len(),
                    c.policy.deny_patterns.len(),
                    c.policy.row_limits.len(),
                    c.policy.default.as_str()
                );
                println!(
                    "  masking: {} sensitive column(s), laundering {:?}, probing {}, stored {}",
                    c.masking.columns.len(),
                    c.masking.laundering,
                    c.masking.probing.as_str(),
                    c.masking.stored.as_str()
                );
                if c.store.enabled {
                    println!(
                        "  store: {}, durability {:?}, checkpoints every {} ms, retention {} days, signing key {}",
                        c.store.path.display(),
                        c.store.durability,
                        c.store.checkpoint_interval_ms,
                        c.store.retention_days,
                        c.store.signing_key.display()
                    );
                } else {
                    println!("  WARNING: store.enabled = false: sessions are not recorded");
                }
                if c.proxy.fail_open {
                    println!(
                        "  WARNING: fail_open = true: protected flows bypass sluice while it is down"
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Completions { shell } => manpages::completions(shell, Cli::command()),
        Command::Man { out } => manpages::man(Cli::command(), &out),
        Command::Cleanup { config } => match Config::load(&config) {
            Ok(c) => {
                let removed = sluice_intercept::Interceptor::cleanup(&c);
                if removed.is_empty() {
                    println!("nothing to clean up");
                }
                for r in removed {
                    println!("removed {r}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Files sluice creates from here on (the store, its key) are readable by
/// their owner only.
pub(crate) fn private_files() {
    #[allow(unsafe_code)]
    // SAFETY: umask only sets the process's file-creation mask; it has no
    // memory effects and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// SIGPIPE back to its default action (Rust ignores it before `main`).
fn default_sigpipe() {
    #[allow(unsafe_code)]
    // SAFETY: signal() with SIG_DFL installs no handler code; it only resets
    // the disposition, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error and its causes, skipping a cause whose text the message above
/// it already includes (leaf errors often quote their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn doctor_cmd() -> ExitCode {
    let checks = doctor::run();
    for c in &checks {
        let mark = match c.status {
            doctor::Status::Ok => "ok  ",
            doctor::Status::Warn => "warn",
            doctor::Status::Fail => "FAIL",
        };
        println!("[{mark}] {:<20} {:<10} {}", c.name, c.needed_by, c.detail);
    }
    let (gw, jh, line) = doctor::verdict(&checks);
    println!("{line}");
    if gw && jh {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
