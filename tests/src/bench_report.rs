//! What every benchmark suite shares: where results go, how the machine and
//! its software are described, medians, PNG charts (plotters), and
//! `bench/REPORT.md`, which gathers each suite's section behind one table of
//! headline ratios.
//!
//! A suite writes `bench/results/<suite>.json` (its numbers, a `headline`
//! list and the machine), `bench/results/<suite>.md` (its section, charts
//! linked as `../charts/<file>.png`) and its charts under `bench/charts/`;
//! [`assemble`] then rebuilds the report from whatever suites have results.
use std::{fmt::Write as _, fs, path::PathBuf, sync::OnceLock};

use anyhow::{Context as _, bail};
use plotters::prelude::*;
use serde_json::{Value, json};

/// The suites of `cargo xtask bench`, in the order they run and appear in
/// the report.
pub const SUITES: &[(&str, &str)] = &[
    (
        "pgbench",
        "pgbench: direct, pgbouncer, sluice relay and sluice full",
    ),
    ("large", "Large result: 1M rows with PANs"),
    (
        "connect",
        "Connection setup: eBPF redirect, nftables TPROXY, direct",
    ),
    ("mysql", "MySQL: sysbench through sluice and direct"),
    ("micro", "Micro-benchmarks (criterion)"),
    ("scale", "Scale: 5,000 idle connections"),
];

/// `bench/` in the source tree.
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench")
}

/// `bench/results/`, created if missing.
pub fn results_dir() -> anyhow::Result<PathBuf> {
    let dir = bench_dir().join("results");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `bench/charts/`, created if missing.
pub fn charts_dir() -> anyhow::Result<PathBuf> {
    let dir = bench_dir().join("charts");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// One line of the report's headline table.
#[derive(Debug, Clone)]
pub struct Headline {
    /// What was measured, e.g. "sluice full / direct, pgbench -S, 16 clients".
    pub what: String,
    /// The figure as shown, e.g. "0.91×" or "38 µs".
    pub measured: String,
    /// The issue's target, if it sets one, e.g. "≥ 0.85×".
    pub target: Option<String>,
    /// Whether this run met the target.
    pub met: Option<bool>,
}

impl Headline {
    /// A figure with no target.
    pub fn info(what: impl Into<String>, measured: impl Into<String>) -> Headline {
        Headline {
            what: what.into(),
            measured: measured.into(),
            target: None,
            met: None,
        }
    }

    /// A figure judged against a target.
    pub fn judged(
        what: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Headline {
        Headline {
            what: what.into(),
            measured: measured.into(),
            target: Some(target.into()),
            met: Some(met),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "what": self.what,
            "measured": self.measured,
            "target": self.target,
            "met": self.met,
        })
    }

    fn from_json(v: &Value) -> Option<Headline> {
        Some(Headline {
            what: v.get("what")?.as_str()?.to_owned(),
            measured: v.get("measured")?.as_str()?.to_owned(),
            target: v.get("target").and_then(Value::as_str).map(str::to_owned),
            met: v.get("met").and_then(Value::as_bool),
        })
    }
}

/// The machine and software a run used, and when: recorded with every
/// figure.
pub fn machine() -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("?", |(_, v)| v.trim())
        .to_owned();
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib.div_ceil(1024 * 1024));
    json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "memory_gib": mem_gib,
        "kernel": command_line(&["uname", "-r"]),
        "os": os_release(),
        "postgresql": command_line(&["/usr/lib/postgresql/15/bin/postgres", "--version"]),
        "pgbouncer": command_line(&["pgbouncer", "--version"]),
        "mariadb": command_line(&["mariadbd", "--version"]),
        "sysbench": command_line(&["sysbench", "--version"]),
        "rustc": command_line(&["rustc", "--version"]),
        "commit": commit(),
        "date": command_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        "loadavg": loadavg(),
    })
}

/// The software a suite's figures depend on, as named in [`machine`].
fn software(suite: &str) -> &'static [&'static str] {
    match suite {
        "pgbench" => &["postgresql", "pgbouncer"],
        "mysql" => &["mariadb", "sysbench"],
        "micro" => &["rustc"],
        "soak" => &["postgresql", "mariadb"],
        _ => &["postgresql"],
    }
}

/// The commit the code ran from, `-dirty` when files other than the
/// benchmark results (which earlier suites of the same run write) differ
/// from it.
fn commit() -> String {
    let head = command_line(&["git", "rev-parse", "--short=7", "HEAD"]);
    let changed = command_line(&[
        "git",
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ":/",
        ":(top,exclude)bench",
    ]);
    if changed.trim().is_empty() || changed == "?" {
        head
    } else {
        format!("{head}-dirty")
    }
}

/// The machine as one markdown sentence, with the versions of what
/// `suite` measured.
pub fn machine_line(m: &Value, suite: &str) -> String {
    let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let versions: Vec<String> = software(suite).iter().map(|k| s(k)).collect();
    format!(
        "{} CPUs ({}), {} GiB, {}, kernel {}; {}; commit {}, {}",
        m.get("cpus").and_then(Value::as_u64).unwrap_or(0),
        s("cpu"),
        m.get("memory_gib").and_then(Value::as_u64).unwrap_or(0),
        s("os"),
        s("kernel"),
        versions.join("; "),
        s("commit"),
        s("date"),
    )
}

fn os_release() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// First line of a command's output (stdout, else stderr), or "?" if it
/// cannot run. Runs in the source tree, so `git` sees the repository.
pub fn command_line(argv: &[&str]) -> String {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// The median of `values` (the mean of the middle two for an even count);
/// 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// `a / b`, 0 when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// One bar series of a grouped bar chart: a value per group.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// A grouped bar chart: for each group on the x axis, one bar per series.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// File name under `bench/charts/`, ending in `.png`.
    pub file: String,
    pub title: String,
    pub y_label: String,
    /// The x axis's categories.
    pub groups: Vec<String>,
    pub series: Vec<Series>,
}

/// Fixed colours, so a route keeps its colour across charts: direct grey,
/// then blue, orange, green, red, purple.
const PALETTE: [RGBColor; 6] = [
    RGBColor(130, 130, 130),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// plotters draws text with the font registered here (DejaVu Sans, from
/// Debian's `fonts-dejavu-core`, which `cargo xtask setup` installs).
fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = fs::read(FONT).map_err(|e| {
            format!("the charts' font {FONT}: {e} (install fonts-dejavu-core: `cargo xtask setup`)")
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT} is not a usable font"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

impl BarChart {
    /// Draw the chart as a PNG under `bench/charts/`; returns the markdown
    /// that shows it from a suite's section.
    pub fn draw(&self) -> anyhow::Result<String> {
        register_font()?;
        if self.groups.is_empty() || self.series.is_empty() {
            bail!("chart {}: nothing to draw", self.file);
        }
        let path = charts_dir()?.join(&self.file);
        self.render(&path)
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        Ok(format!("![{}](../charts/{})", self.title, self.file))
    }

    fn render(&self, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(path, (960, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max);
        let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
        #[expect(clippy::cast_precision_loss, reason = "a handful of groups")]
        let groups = self.groups.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..groups, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_desc(&self.y_label)
            .y_label_formatter(&|v| short_number(*v))
            .label_style(("sans-serif", 14))
            .draw()?;
        #[expect(clippy::cast_precision_loss, reason = "a handful of series")]
        let width = 0.8 / self.series.len() as f64;
        for (j, series) in self.series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            #[expect(clippy::cast_precision_loss, reason = "a handful of groups")]
            let bars = series.values.iter().enumerate().map(move |(i, &v)| {
                let x0 = i as f64 + 0.1 + j as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v.max(0.0))], color.filled())
            });
            chart
                .draw_series(bars)?
                .label(series.name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
        // The group names under their bars, placed in pixels.
        let style = TextStyle::from(("sans-serif", 15).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        for (i, name) in self.groups.iter().enumerate() {
            #[expect(clippy::cast_precision_loss, reason = "a handful of groups")]
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            root.draw(&Text::new(name.as_str(), (px, py + 8), style.clone()))?;
        }
        root.present()?;
        Ok(())
    }
}

/// 12345 → "12.3k", 0.5 → "0.5".
fn short_number(v: f64) -> String {
    if v.abs() >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v.abs() >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Write a suite's results: `<suite>.json` (its data, plus `machine` and
/// `headline`) and `<suite>.md` (its section); then rebuild the report.
pub fn write_suite(
    suite: &str,
    mut data: Value,
    section_md: &str,
    headline: &[Headline],
) -> anyhow::Result<()> {
    let dir = results_dir()?;
    if let Value::Object(map) = &mut data {
        map.insert("suite".into(), json!(suite));
        map.entry("machine").or_insert_with(machine);
        map.insert(
            "headline".into(),
            Value::Array(headline.iter().map(Headline::to_json).collect()),
        );
    } else {
        bail!("suite {suite}: results must be a JSON object");
    }
    let json_path = dir.join(format!("{suite}.json"));
    fs::write(&json_path, serde_json::to_string_pretty(&data)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = dir.join(format!("{suite}.md"));
    fs::write(&md_path, section_md).with_context(|| format!("writing {}", md_path.display()))?;
    println!("written: bench/results/{suite}.json, bench/results/{suite}.md");
    assemble()
}

/// Rebuild `bench/REPORT.md` from the suites' results on disk.
pub fn assemble() -> anyhow::Result<()> {
    let dir = results_dir()?;
    let mut headlines = String::new();
    let mut sections = String::new();
    let mut machines = Vec::new();
    let mut missing = Vec::new();
    for &(suite, title) in SUITES {
        let json = fs::read_to_string(dir.join(format!("{suite}.json")))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        let md = fs::read_to_string(dir.join(format!("{suite}.md"))).ok();
        let (Some(json), Some(md)) = (json, md) else {
            missing.push(suite);
            continue;
        };
        for h in json
            .get("headline")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Headline::from_json)
        {
            let met = match h.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            writeln!(
                headlines,
                "| [{suite}](#{}) | {} | {} | {} | {met} |",
                anchor(title),
                h.what,
                h.measured,
                h.target.as_deref().unwrap_or(""),
            )?;
        }
        if let Some(m) = json.get("machine") {
            machines.push((suite, machine_line(m, suite)));
        }
        writeln!(sections, "## {title}\n")?;
        writeln!(
            sections,
            "{}\n",
            demote(&md).replace("](../charts/", "](charts/")
        )?;
    }

    let mut out = String::new();
    writeln!(out, "# sluice benchmarks\n")?;
    writeln!(
        out,
        "Every figure here comes from `cargo xtask bench` (all suites, about 15 minutes; `--quick` about 3) or \
         `cargo xtask bench <suite>`, run on the machine named under each suite. They are that machine's \
         numbers: compare routes within a suite's run (they ran back to back on the same load), not with other \
         machines. Each suite's raw data is in `bench/results/<suite>.json`.\n"
    )?;
    writeln!(out, "## Headlines\n")?;
    if headlines.is_empty() {
        writeln!(out, "No suite has results yet: run `cargo xtask bench`.\n")?;
    } else {
        writeln!(
            out,
            "| suite | what | measured | target | met |\n|---|---|---:|---|---|"
        )?;
        writeln!(out, "{headlines}")?;
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|s| format!("`cargo xtask bench {s}`"))
            .collect();
        writeln!(out, "Not run yet: {}.\n", list.join(", "))?;
    }
    let others = other_results(&dir);
    if !others.is_empty() {
        writeln!(
            out,
            "Earlier, narrower suites (`cargo xtask bench relay|store`, from the issues that built the relay and the \
             store) keep their own reports: {}.\n",
            others.join(", ")
        )?;
    }
    if !machines.is_empty() {
        writeln!(out, "## Where they ran\n")?;
        for (suite, line) in &machines {
            writeln!(out, "- **{suite}**: {line}")?;
        }
        writeln!(out)?;
    }
    out.push_str(&sections);
    let path = bench_dir().join("REPORT.md");
    fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    println!("written: bench/REPORT.md");
    Ok(())
}

/// Links to the `.md` results of suites outside [`SUITES`].
fn other_results(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".md").map(str::to_owned))
        .filter(|n| !SUITES.iter().any(|(s, _)| s == n))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| format!("[{n}](results/{n}.md)"))
        .collect()
}

/// Headings one level deeper, so a suite's `#` title sits under the
/// report's `##`; the suite's own first heading is dropped (the report
/// titles the section).
fn demote(md: &str) -> String {
    let mut out = String::new();
    let mut dropped = false;
    for line in md.lines() {
        if !dropped && line.starts_with("# ") {
            dropped = true;
            continue;
        }
        if line.starts_with('#') {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}

/// GitHub's anchor for a heading.
fn anchor(title: &str) -> String {
    title
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() {
                Some(c.to_ascii_lowercase())
            } else if c == ' ' || c == '-' {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{anchor, demote, median, short_number};

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 2.0, 4.0]), 3.0);
    }

    #[test]
    fn headings_sit_under_the_report() {
        let md = "# pgbench\n\nintro\n\n## Table\n\n| a |\n";
        assert_eq!(demote(md), "intro\n\n### Table\n\n| a |");
    }

    #[test]
    fn anchors_and_numbers() {
        assert_eq!(
            anchor("Connection setup: eBPF redirect, nftables TPROXY, direct"),
            "connection-setup-ebpf-redirect-nftables-tproxy-direct"
        );
        assert_eq!(short_number(12_345.0), "12k");
        assert_eq!(short_number(1_234.0), "1.2k");
        assert_eq!(short_number(0.5), "0.50");
        assert_eq!(short_number(2_500_000.0), "2.5M");
    }
}
