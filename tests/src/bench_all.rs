//! `cargo xtask bench` with no suite: every suite of the report, one after
//! the other on this machine, then `bench/REPORT.md`. A suite that fails is
//! reported and the rest still run; the command fails at the end if any did.
use std::time::Instant;

use anyhow::bail;

use crate::{
    bench_connect, bench_large, bench_micro, bench_mysql, bench_pgbench, bench_report, bench_scale,
};

/// Run every suite; `quick` runs each in its short form.
pub fn run(quick: bool) -> anyhow::Result<()> {
    let start = Instant::now();
    let suites = bench_report::SUITES;
    println!(
        "running {} benchmark suites{}: {}",
        suites.len(),
        if quick { " (quick)" } else { "" },
        suites
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut failed = Vec::new();
    for (i, &(suite, title)) in suites.iter().enumerate() {
        println!(
            "\n━━ [{}/{}] {title} ({:.0} min so far) ━━",
            i + 1,
            suites.len(),
            start.elapsed().as_secs_f64() / 60.0
        );
        let result = match suite {
            "pgbench" => bench_pgbench::run(&bench_pgbench::Options::new(quick, None, None, None)),
            "large" => bench_large::run(quick),
            "connect" => bench_connect::run(quick),
            "mysql" => bench_mysql::mysql(&bench_mysql::Options {
                duration: if quick { 3 } else { 5 },
                clients: if quick { vec![8] } else { vec![1, 4, 8] },
                runs: if quick { 1 } else { 3 },
                quick,
                breakdown: false,
                perf: false,
            }),
            "micro" => bench_micro::run(quick),
            "scale" => bench_scale::run(quick),
            other => Err(anyhow::anyhow!("no suite named {other}")),
        };
        if let Err(e) = result {
            eprintln!("suite {suite} failed: {e:#}");
            failed.push(suite);
        }
    }
    bench_report::assemble()?;
    println!(
        "\nall suites done in {:.1} min; the report is bench/REPORT.md",
        start.elapsed().as_secs_f64() / 60.0
    );
    if !failed.is_empty() {
        bail!(
            "{} suite(s) failed: {} (their earlier results, if any, stay in the report)",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
