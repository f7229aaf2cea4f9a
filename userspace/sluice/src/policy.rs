//! `sluice policy check`: what the policy decides for a statement, and why.
use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Subcommand;
use sluice_config::{Config, Protocol};
use sluice_policy::{
    Dialect,
    analyze::Source,
    engine::{Action, Engine},
};

/// Policy commands.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Decide SQL as sluice would for one identity and target, and explain.
    ///
    /// Prints, for each statement of the SQL: its class and kind, the tables,
    /// functions and predicate columns it uses, each output column's lineage
    /// and masking, and the decision with the rule that made it. The whole
    /// string's decision (one refused statement refuses it all) comes last.
    /// Exit status: 0 allowed, 1 refused, 3 held for approval, 2 on errors.
    #[command(after_long_help = CHECK_EXAMPLES)]
    Check {
        /// Configuration file whose [policy] and [masking] are checked.
        #[arg(short, long, default_value = "/etc/sluice/sluice.toml")]
        config: PathBuf,
        /// Workload identity (as recorded: host:<ip>, uid:<n>, …).
        #[arg(short, long)]
        identity: String,
        /// Target name (default: the first target in the config).
        #[arg(short, long)]
        target: Option<String>,
        /// Database user the session logs in as: rules with `users = [...]`
        /// apply only when one of their globs matches it. Without it those
        /// rules are left out (the output says how many).
        #[arg(short, long)]
        user: Option<String>,
        /// SQL dialect: postgres or mysql (mariadb). Default: the target's
        /// protocol (mysql for a `protocol = "mysql"` target, else postgres).
        #[arg(short, long, value_parser = parse_dialect)]
        dialect: Option<Dialect>,
        /// The SQL (one or more statements); `-` reads standard input.
        sql: String,
    },
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    s.parse()
        .map_err(|e: sluice_policy::dialect::UnknownDialect| e.to_string())
}

const CHECK_EXAMPLES: &str = "Examples:
  sluice policy check -c sluice.toml -i host:10.0.1.5 \"SELECT pan FROM cards LIMIT 5\"
  sluice policy check -c sluice.toml -i uid:1000 -t billing \"DELETE FROM orders\"
  sluice policy check -c sluice.toml -i host:10.0.1.5 -u report_ro \"UPDATE cards SET holder = 'x' WHERE id = 1\"
  sluice policy check -c sluice.toml -i uid:1000 --dialect mysql \"SELECT 1 /*!, pan FROM cards */\"
  echo \"SELECT reverse(pan) FROM cards\" | sluice policy check -c sluice.toml -i host:10.0.1.5 -";

/// Run a policy command.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Check {
            config,
            identity,
            target,
            user,
            dialect,
            sql,
        } => match check(
            &config,
            &identity,
            target.as_deref(),
            user.as_deref(),
            dialect,
            &sql,
        ) {
            Ok(Action::Allow) => ExitCode::SUCCESS,
            Ok(Action::Deny) => ExitCode::from(1),
            Ok(Action::Approve) => ExitCode::from(3),
            Err(e) => {
                eprintln!("sluice policy check: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn check(
    path: &std::path::Path,
    identity: &str,
    target: Option<&str>,
    user: Option<&str>,
    dialect: Option<Dialect>,
    sql: &str,
) -> anyhow::Result<Action> {
    let config = Config::load(path)?;
    let target = match target {
        Some(t) => {
            anyhow::ensure!(
                config.targets.iter().any(|x| x.name == t),
                "no target is named {t:?} in {}",
                path.display()
            );
            t.to_string()
        }
        None => config
            .targets
            .first()
            .map(|t| t.name.clone())
            .unwrap_or_default(),
    };
    // The target's protocol says how its statements are written.
    let dialect =
        dialect.unwrap_or_else(|| match config.targets.iter().find(|t| t.name == target) {
            Some(t) if t.protocol == Protocol::Mysql => Dialect::MySql,
            _ => Dialect::Postgres,
        });
    let sql = if sql == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        sql.to_string()
    };
    let engine = Arc::new(Engine::new(&config.policy, &config.masking)?);
    // An identity named by `[[identities]]` has that rule's groups.
    let groups = config
        .identities
        .iter()
        .find(|r| r.name == identity)
        .map(|r| r.groups.clone())
        .unwrap_or_default();
    let session = engine.session_as(identity, &groups, &target, user);
    let (verdict, statements) = session.explain_in(dialect, &sql);
    println!(
        "identity {identity}{}, target {target} ({dialect}){}{}",
        if groups.is_empty() {
            String::new()
        } else {
            format!(" (groups {})", groups.join(", "))
        },
        match user {
            Some(u) => format!(", database user {u}"),
            None => String::new(),
        },
        if session.unmasked() {
            " (sees sensitive columns unmasked)"
        } else {
            ""
        }
    );
    let by_user = config
        .policy
        .rules
        .iter()
        .filter(|r| !r.users.is_empty())
        .count();
    if user.is_none() && by_user > 0 {
        println!(
            "note: {by_user} {} only to some database users (`users = [...]`) and {} left out here; \
             give the session's user with --user",
            if by_user == 1 {
                "rule applies"
            } else {
                "rules apply"
            },
            if by_user == 1 { "is" } else { "are" }
        );
    }
    for (i, s) in statements.iter().enumerate() {
        println!();
        match &s.facts {
            Some(f) => {
                println!("statement {}: {} ({})", i + 1, f.kind, f.class);
                let list = |items: Vec<String>| {
                    if items.is_empty() {
                        "-".to_string()
                    } else {
                        items.join(", ")
                    }
                };
                println!(
                    "  tables:     {}",
                    list(f.tables.iter().map(|t| t.to_string()).collect())
                );
                println!(
                    "  functions:  {}",
                    list(f.functions.iter().cloned().collect())
                );
                println!(
                    "  predicates: {}",
                    list(f.predicates.iter().map(Source::to_string).collect())
                );
                if !f.stored.is_empty() {
                    println!(
                        "  stored:     {}",
                        list(f.stored.iter().map(Source::to_string).collect())
                    );
                }
                if !f.assigned.is_empty() {
                    println!(
                        "  assigned:   {}",
                        list(f.assigned.iter().map(Source::to_string).collect())
                    );
                }
                if matches!(f.kind.as_str(), "delete" | "update") {
                    println!("  where:      {}", if f.has_where { "yes" } else { "none" });
                }
                if !f.outputs.is_empty() {
                    println!(
                        "  limit:      {}",
                        f.limit
                            .map(|l| l.to_string())
                            .unwrap_or_else(|| "none".into())
                    );
                    println!("  outputs:");
                    for o in &f.outputs {
                        let sources: Vec<String> =
                            o.lineage.sources.iter().map(Source::to_string).collect();
                        let how = if o.lineage.sources.is_empty() {
                            "constant".to_string()
                        } else if o.lineage.direct {
                            format!("= {}", sources.join(" | "))
                        } else {
                            format!("computed from {}", sources.join(", "))
                        };
                        let own = &s.verdict.masks;
                        let mask = if o.label == "*" {
                            // `*` brings the table's sensitive columns.
                            let m: Vec<String> = own
                                .iter()
                                .filter(|(l, _)| !f.outputs.iter().any(|x| &x.label == l))
                                .map(|(l, f)| format!("{l}: {}", f.as_str()))
                                .collect();
                            if m.is_empty() {
                                String::new()
                            } else {
                                format!("  → mask {}", m.join(", "))
                            }
                        } else {
                            own.iter()
                                .find(|(l, _)| l == &o.label)
                                .map(|(_, f)| format!("  → mask {}", f.as_str()))
                                .unwrap_or_default()
                        };
                        println!("    {:<16} {how}{mask}", o.label);
                    }
                }
            }
            None => println!("statement {}: not analyzed", i + 1),
        }
        println!(
            "  decision:   {} by {} — {}",
            s.verdict.action.as_str(),
            s.verdict.rule,
            s.verdict.reason
        );
    }
    println!();
    println!(
        "decision: {} by {} — {}",
        verdict.action.as_str().to_uppercase(),
        verdict.rule,
        verdict.reason
    );
    println!("content detectors: PAN, track data{}", detectors(&config));
    Ok(verdict.action)
}

fn detectors(config: &Config) -> String {
    let d = &config.masking.detectors;
    let mut s = String::new();
    for (on, name) in [
        (d.cvv, "CVV (by column name)"),
        (d.email, "email"),
        (d.ssn, "SSN"),
        (d.iban, "IBAN"),
    ] {
        if on {
            s.push_str(", ");
            s.push_str(name);
        }
    }
    s + " on every value returned"
}
