//! `cargo xtask setup`: idempotent bootstrap of a Debian 12 machine (as root)
//! with everything the build and the privileged tests need.
//!
//! Each step checks first and prints `setup: <thing> ... already present`, or
//! says what it is doing and then `ok`. Tool installs fail the run; kernel
//! checks only warn, so a developer on an odd kernel still gets a build.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::context::{self, Context, capture, first_line_if_ok};

/// Debian packages the build, the lab and the tests use.
const APT_PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22 (it is built from source by `cargo install`).
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "clang",
    "libclang-dev",
    // Inspecting programs, links and maps.
    "bpftool",
    // The lab's topology: namespaces, veths, policy routing, firewalls.
    "iproute2",
    "iptables",
    "nftables",
    // Real servers and clients for the end-to-end tests and the lab.
    "postgresql-15",
    "postgresql-client-15",
    "pgbouncer",
    "python3-psycopg2",
    // MariaDB 10.11 (server, `mariadb` client, `mariadb-admin`) for the MySQL
    // tests; its own service is kept stopped, see `host_mariadb`. sysbench
    // for the MySQL benchmark.
    "mariadb-server",
    "mariadb-client",
    "sysbench",
    // The font the benchmark report's charts (plotters) are drawn with.
    "fonts-dejavu-core",
    // mysqlclient (PyPI) is a C extension built from source against
    // libmariadb (found through pkg-config `mariadb`); see `python_mysql`.
    "libmariadb-dev",
    "pkg-config",
    "build-essential",
    "python3-dev",
    // The venv psycopg 3 (from PyPI) is installed into; see `python_venv`.
    "python3-venv",
    // The OIDC tests' real OpenID provider (npm `oidc-provider`); see
    // `oidc_harness`. A nodejs build that bundles npm (NodeSource's) provides
    // `npm` itself, which `apt_provided` counts as present.
    "nodejs",
    "npm",
    // ps/pkill, nsenter/unshare, packet captures when debugging the lab.
    "procps",
    "util-linux",
    "tcpdump",
    // `cargo xtask dist`: dpkg-shlibdeps for the .deb's Depends (dpkg-deb
    // itself is in dpkg). The deploy tests: `systemd-analyze verify` of the
    // unit, PyYAML to read the Kubernetes manifest, strace for the syscalls
    // the unit's filter must allow.
    "dpkg-dev",
    "systemd",
    "python3-yaml",
    "strace",
];

/// The bpf-linker release checked to build with the machine's stable Rust and
/// LLVM 22; pinned so a newer release cannot break a fresh machine's setup.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The cargo-fuzz release `cargo xtask fuzz` builds the fuzz targets with,
/// checked with the pinned eBPF Rust release; pinned like bpf-linker.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Where Debian's LLVM 22 lives, for llvm-sys inside bpf-linker.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The LLVM major version bpf-linker is built against ([`LLVM_PREFIX`]).
const LLVM_MAJOR: &str = "22";

/// The Python environment the lab's psycopg 3 tests run in (the tests find it
/// through `sluice_lab::python`, which names the same path). A venv, because
/// Debian ships only psycopg2 and its system Python refuses `pip install`.
const PYTHON_VENV: &str = "/var/lib/sluice-lab/venv";
/// psycopg 3 with its bundled libpq (the `binary` extra), pinned like
/// bpf-linker: the version the lab tests were written and checked against.
const PSYCOPG_VERSION: &str = "3.3.9";
/// The MySQL tests' drivers, pinned likewise: PyMySQL (pure Python),
/// mysqlclient (`MySQLdb`, built against Debian's libmariadb), and MySQL
/// Connector/Python (`mysql.connector`, a manylinux wheel with its C
/// extension), whose `cursor(prepared=True)` speaks the binary protocol
/// (COM_STMT_PREPARE/EXECUTE) the other two never use.
const PYMYSQL_VERSION: &str = "1.2.4";
const MYSQLCLIENT_VERSION: &str = "2.3.1";
const MYSQL_CONNECTOR_VERSION: &str = "26.10.0";

/// Process names of a MariaDB server and of the wrapper script that
/// restarts it (`comm`, at most 15 bytes).
const MARIADB_PROCESSES: &[&str] = &["mariadbd", "mysqld", "mariadbd-safe", "mysqld_safe"];
/// Where Debian's packaged server listens; root logs in there by
/// unix_socket authentication.
const HOST_MARIADB_SOCKET: &str = "/run/mysqld/mysqld.sock";

/// The Node project of the OIDC tests' provider, relative to the workspace
/// root (`tests/src/oidc.rs` runs its scripts).
const OIDC_HARNESS: &str = "tests/oidc";

const BPFFS: &str = "/sys/fs/bpf";
const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

pub fn run(ctx: &Context) -> Result<()> {
    context::require_root(
        "setup",
        "it installs Debian packages with apt-get, stops the host's PostgreSQL \
         cluster and MariaDB server and mounts bpffs; the tests it prepares for then load eBPF \
         programs and create network namespaces, which need CAP_BPF, \
         CAP_NET_ADMIN and CAP_SYS_ADMIN",
    )?;
    let started = Instant::now();
    apt_packages(ctx)?;
    python_venv(ctx)?;
    python_mysql(ctx)?;
    oidc_harness(ctx)?;
    host_postgres_clusters(ctx);
    host_mariadb(ctx);
    ebpf_toolchain(ctx)?;
    bpf_linker(ctx)?;
    cargo_nextest(ctx)?;
    cargo_fuzz(ctx)?;
    cargo_deny(ctx)?;
    bpffs(ctx);
    cgroup2();
    btf();
    println!("setup: done in {:.1?}", started.elapsed());
    Ok(())
}

fn present(thing: &str) {
    println!("setup: {thing} ... already present");
}

fn doing(thing: &str, verb: &str) {
    println!("setup: {thing} ... {verb}");
}

fn ok(thing: &str) {
    println!("setup: {thing} ... ok");
}

fn warn(thing: &str, problem: &str) {
    println!("setup: {thing} ... WARNING: {problem}");
}

/// Step 1: install the missing Debian packages in one apt-get call.
fn apt_packages(ctx: &Context) -> Result<()> {
    let provided = apt_provided(ctx);
    let mut missing = Vec::new();
    for &pkg in APT_PACKAGES {
        if apt_installed(ctx, pkg) || provided.iter().any(|p| p == pkg) {
            present(&format!("apt {pkg}"));
        } else {
            println!("setup: apt {pkg} ... missing");
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }

    let thing = format!("apt {}", missing.join(" "));
    doing(&thing, "installing");
    let apt = |args: &[&str]| {
        let mut cmd = ctx.command("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            // Keep existing config files without asking (no TTY in CI).
            .args(["-o", "Dpkg::Options::=--force-confdef"])
            .args(["-o", "Dpkg::Options::=--force-confold"])
            .args(args);
        cmd
    };
    context::run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    context::run(&mut install)?;
    ok(&thing);
    Ok(())
}

fn apt_installed(ctx: &Context, pkg: &str) -> bool {
    let mut query = ctx.command("dpkg-query");
    query.args(["-W", "--showformat=${Status}", pkg]);
    // `${Status}` is "<want> <error flag> <state>", e.g. "install ok installed"
    // (or "hold ok installed" for a held package, which is installed too).
    capture(&mut query).is_some_and(|out| {
        let status = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = status.split_whitespace().collect();
        matches!(words[..], [_, "ok", "installed"])
    })
}

/// Names that installed packages provide (their `Provides:` field), e.g.
/// `npm` from NodeSource's `nodejs`, which also conflicts with Debian's `npm`:
/// installing that one by name would remove Node.js.
fn apt_provided(ctx: &Context) -> Vec<String> {
    let mut query = ctx.command("dpkg-query");
    query.args(["-W", "--showformat=${Status}\t${Provides}\n"]);
    let Some(out) = capture(&mut query).filter(|o| o.status.success()) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(status, _)| status.ends_with(" installed"))
        // "a, b (= 1.0), c:any" → a, b, c
        .flat_map(|(_, provides)| provides.split(','))
        .filter_map(|p| {
            let name = p.split_whitespace().next()?;
            Some(name.split(':').next().unwrap_or(name).to_owned())
        })
        .collect()
}

/// Step 1b: a venv at [`PYTHON_VENV`] with psycopg 3 from PyPI, for the
/// tests that drive server-side cursors, COPY, pipeline mode and binary
/// results. Reinstalls only if psycopg is missing or not the pinned version.
fn python_venv(ctx: &Context) -> Result<()> {
    let thing = format!("psycopg {PSYCOPG_VERSION} in the venv {PYTHON_VENV}");
    let python = Path::new(PYTHON_VENV).join("bin/python3");
    let installed = first_line_if_ok(
        ctx.command(&python)
            .args(["-c", "import psycopg; print(psycopg.__version__)"]),
    );
    if installed.as_deref() == Some(PSYCOPG_VERSION) {
        present(&thing);
        return Ok(());
    }
    doing(&thing, "installing");
    // A venv whose interpreter no longer runs (Python upgraded under it) is
    // recreated; a working one is kept and only gets the package.
    if first_line_if_ok(ctx.command(&python).args(["-c", "print()"])).is_none() {
        fs::create_dir_all(PYTHON_VENV).with_context(|| format!("cannot create {PYTHON_VENV}"))?;
        context::run(
            ctx.command("python3")
                .args(["-m", "venv", "--clear", PYTHON_VENV]),
        )?;
    }
    context::run(ctx.command(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("psycopg[binary]=={PSYCOPG_VERSION}"),
    ]))?;
    ok(&thing);
    Ok(())
}

/// Step 1b, continued: the MySQL drivers in the same venv, pinned: PyMySQL,
/// mysqlclient and MySQL Connector/Python. mysqlclient has no Linux wheels;
/// pip builds it from source with build-essential and python3-dev, finding
/// libmariadb's flags through `pkg-config mariadb` (libmariadb-dev).
/// Reinstalls only if any is missing, does not import, or is not the pinned
/// version.
fn python_mysql(ctx: &Context) -> Result<()> {
    let want = format!("{PYMYSQL_VERSION} {MYSQLCLIENT_VERSION} {MYSQL_CONNECTOR_VERSION}");
    let thing = format!(
        "PyMySQL {PYMYSQL_VERSION}, mysqlclient {MYSQLCLIENT_VERSION} and \
         mysql-connector-python {MYSQL_CONNECTOR_VERSION} in the venv {PYTHON_VENV}"
    );
    let python = Path::new(PYTHON_VENV).join("bin/python3");
    // Every import: a mysqlclient whose libmariadb went away does not load.
    // (`pymysql.__version__` imitates MySQLdb's; ask the distributions.)
    let installed = first_line_if_ok(ctx.command(&python).args([
        "-c",
        "import pymysql, MySQLdb, mysql.connector; \
         from importlib.metadata import version as v; \
         print(v('PyMySQL'), v('mysqlclient'), v('mysql-connector-python'))",
    ]));
    if installed.as_deref() == Some(want.as_str()) {
        present(&thing);
        return Ok(());
    }
    doing(&thing, "installing");
    context::run(ctx.command(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("PyMySQL=={PYMYSQL_VERSION}"),
        &format!("mysqlclient=={MYSQLCLIENT_VERSION}"),
        &format!("mysql-connector-python=={MYSQL_CONNECTOR_VERSION}"),
    ]))?;
    ok(&thing);
    Ok(())
}

/// Step 1c: `npm ci` in [`OIDC_HARNESS`], so the OIDC tests find
/// `oidc-provider` (pinned in its package.json and package-lock.json) in
/// `node_modules`. Skipped when npm's own record of the install
/// (`node_modules/.package-lock.json`) is newer than the lock file.
fn oidc_harness(ctx: &Context) -> Result<()> {
    let dir = ctx.root.join(OIDC_HARNESS);
    let thing = format!("npm packages in {OIDC_HARNESS} (oidc-provider)");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(&dir.join("package-lock.json"))
        .with_context(|| format!("no package-lock.json in {}", dir.display()))?;
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    if installed.is_some_and(|t| t >= lock)
        && dir.join("node_modules/oidc-provider/package.json").exists()
    {
        present(&thing);
        return Ok(());
    }
    doing(&thing, "installing");
    context::run(
        ctx.command("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]),
    )?;
    ok(&thing);
    Ok(())
}

/// Installing postgresql-15 creates and starts a cluster on the host's port
/// 5432. The lab runs its own servers inside network namespaces, so stop every
/// host cluster and make it start only by hand (`start.conf` = `manual`, which
/// both the systemd generator and the init script honour). Never fails.
fn host_postgres_clusters(ctx: &Context) {
    let Some(out) = capture(ctx.command("pg_lsclusters").arg("--no-header")) else {
        return; // No postgresql-common: nothing can be running.
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [version, name, port, status, ..] = fields[..] else {
            continue;
        };
        let thing =
            format!("host PostgreSQL cluster {version}/{name} (port {port}) stopped, manual start");
        let online = status.starts_with("online");
        let start_conf = format!("/etc/postgresql/{version}/{name}/start.conf");
        // "manual" and "disabled" both keep it from starting at boot.
        let auto_start = fs::read_to_string(&start_conf)
            .is_ok_and(|text| !matches!(start_mode(&text), "manual" | "disabled"));
        if !online && !auto_start {
            present(&thing);
            continue;
        }
        doing(&thing, "stopping");
        if online {
            let mut stop = ctx.command("pg_ctlcluster");
            stop.args([version, name, "stop"]);
            if let Err(err) = context::run(&mut stop) {
                warn(&thing, &format!("{err:#}"));
            }
        }
        if auto_start && let Err(err) = set_manual_start(&start_conf) {
            warn(&thing, &format!("{err:#}"));
        }
        if Path::new("/run/systemd/system").exists() {
            // Best effort: the generic unit that starts all "auto" clusters.
            let _ = capture(
                ctx.command("systemctl")
                    .args(["disable", "--quiet", "postgresql"]),
            );
        }
        ok(&thing);
    }
}

/// Installing mariadb-server starts the host's own server (on loopback port
/// 3306). The lab runs its own servers inside network namespaces, so stop
/// the host's (see [`host_mariadb_pids`] for which processes that is):
/// `mariadb-admin shutdown` over the packaged socket, then SIGTERM, then
/// SIGKILL, each wait bounded. Under systemd the unit is also disabled.
/// Never fails.
fn host_mariadb(ctx: &Context) {
    let thing = "host MariaDB server stopped";
    let systemd = Path::new("/run/systemd/system").exists();
    let enabled = systemd
        && capture(
            ctx.command("systemctl")
                .args(["is-enabled", "--quiet", "mariadb"]),
        )
        .is_some_and(|out| out.status.success());
    let running = host_mariadb_pids();
    if running.is_empty() && !enabled {
        present(thing);
        return;
    }
    doing(thing, "stopping");
    if systemd {
        // Best effort: stops the unit's server and keeps it from booting.
        let _ = capture(
            ctx.command("systemctl")
                .args(["disable", "--now", "--quiet", "mariadb"]),
        );
    }
    if !host_mariadb_pids().is_empty() {
        // A clean shutdown: the wrapper script sees it and exits too.
        let _ = capture(ctx.command("timeout").args([
            "-k",
            "2",
            "30",
            "mariadb-admin",
            "--no-defaults",
            &format!("--socket={HOST_MARIADB_SOCKET}"),
            "-u",
            "root",
            "--connect-timeout=5",
            "shutdown",
        ]));
    }
    for signal in ["-TERM", "-KILL"] {
        if wait_gone(host_mariadb_pids, 30) {
            break;
        }
        // The wrapper first, so it does not restart the server.
        let mut pids = host_mariadb_pids();
        pids.sort_by_key(|(_, name)| !name.ends_with("safe"));
        for (pid, _) in pids {
            let _ = capture(ctx.command("kill").args([signal, &pid.to_string()]));
        }
    }
    let left = host_mariadb_pids();
    if left.is_empty() {
        ok(thing);
    } else {
        warn(thing, &format!("still running: {left:?}"));
    }
}

/// The host's MariaDB service: servers and their wrapper scripts running in
/// this process's network namespace that read the system's option files
/// (/etc/mysql): (pid, name). A server started with `--no-defaults` or its
/// own `--defaults-file` is someone's private one (the lab's run inside
/// namespaces anyway, but a lab's `mariadb-install-db` runs `mariadbd
/// --bootstrap` here), and is left alone.
fn host_mariadb_pids() -> Vec<(u32, String)> {
    let ours = fs::read_link("/proc/self/ns/net").ok();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = fs::read_to_string(e.path().join("comm")).ok()?;
            let name = comm.trim();
            if !MARIADB_PROCESSES.contains(&name) {
                return None;
            }
            let net = fs::read_link(e.path().join("ns/net")).ok();
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let private = cmdline.split(|&b| b == 0).any(|arg| {
                arg == b"--bootstrap"
                    || arg == b"--no-defaults"
                    || arg.starts_with(b"--defaults-file=")
            });
            (net.is_some() && net == ours && !private).then(|| (pid, name.to_owned()))
        })
        .collect()
}

/// Poll `pids` every 100 ms until it is empty, at most `secs` seconds.
fn wait_gone(pids: fn() -> Vec<(u32, String)>, secs: u64) -> bool {
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if pids().is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The mode in a `start.conf`: its first line that is not a comment.
fn start_mode(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .unwrap_or("auto")
}

fn set_manual_start(start_conf: &str) -> Result<()> {
    let text =
        fs::read_to_string(start_conf).with_context(|| format!("cannot read {start_conf}"))?;
    let mut replaced = false;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim();
        if !replaced && !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push_str("manual");
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str("manual\n");
    }
    fs::write(start_conf, out).with_context(|| format!("cannot write {start_conf}"))
}

/// Step 2: the eBPF crate is built with the Rust release pinned in
/// `ebpf/toolchain.txt` (with rust-src, for `-Z build-std=core`). Not
/// nightly: bpf-linker reads the LLVM bitcode rustc writes, and a nightly
/// on a newer LLVM than bpf-linker's writes bitcode it cannot read.
fn ebpf_toolchain(ctx: &Context) -> Result<()> {
    let pin = ctx.root.join("ebpf/toolchain.txt");
    let toolchain = fs::read_to_string(&pin)
        .with_context(|| format!("cannot read {}", pin.display()))?
        .trim()
        .to_owned();
    let thing = format!("rust {toolchain} toolchain with rust-src (builds the eBPF programs)");
    // `component list` fails when the toolchain is not installed at all.
    let components = capture(ctx.command("rustup").args([
        "component",
        "list",
        "--toolchain",
        &toolchain,
        "--installed",
    ]))
    .filter(|out| out.status.success())
    .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    match components {
        Some(list) if list.lines().any(|l| l.trim() == "rust-src") => present(&thing),
        Some(_) => {
            doing(&thing, "adding rust-src");
            context::run(ctx.command("rustup").args([
                "component",
                "add",
                "rust-src",
                "--toolchain",
                &toolchain,
            ]))?;
            ok(&thing);
        }
        None => {
            doing(&thing, "installing");
            context::run(ctx.command("rustup").args([
                "toolchain",
                "install",
                &toolchain,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))?;
            ok(&thing);
        }
    }
    // The bitcode rustc writes must be readable by bpf-linker's LLVM.
    let llvm = first_line_matching(
        ctx.command("rustup")
            .args(["run", &toolchain, "rustc", "-vV"]),
        "LLVM version:",
    );
    match llvm
        .as_deref()
        .map(|l| l.trim_start_matches("LLVM version:").trim())
    {
        Some(v) if v.split('.').next() == Some(LLVM_MAJOR) => {
            println!(
                "setup: rust {toolchain} writes LLVM {v} bitcode, bpf-linker reads LLVM {LLVM_MAJOR} ... ok"
            );
            Ok(())
        }
        Some(v) => bail!(
            "rust {toolchain} uses LLVM {v} but bpf-linker is built against LLVM {LLVM_MAJOR}: \
             pin a Rust release on LLVM {LLVM_MAJOR} in ebpf/toolchain.txt"
        ),
        None => bail!(
            "cannot tell which LLVM rust {toolchain} uses (`rustup run {toolchain} rustc -vV`)"
        ),
    }
}

/// The first line of `cmd`'s output that starts with `prefix`, if it ran.
fn first_line_matching(cmd: &mut std::process::Command, prefix: &str) -> Option<String> {
    let out = capture(cmd)?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

/// Step 3: bpf-linker, the linker aya-build uses for the eBPF object. Built
/// from source against Debian's LLVM 22 (about two minutes on two cores).
fn bpf_linker(ctx: &Context) -> Result<()> {
    if let Some(version) = first_line_if_ok(ctx.command("bpf-linker").arg("--version")) {
        present(&version);
        return Ok(());
    }
    let thing = format!("bpf-linker {BPF_LINKER_VERSION}");
    doing(&thing, "installing");
    context::run(
        ctx.cargo_install([
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
        .env("LLVM_PREFIX", LLVM_PREFIX),
    )?;
    ok(&thing);
    Ok(())
}

/// Step 4: cargo-nextest, the test runner `cargo xtask test` uses.
fn cargo_nextest(ctx: &Context) -> Result<()> {
    if let Some(version) = first_line_if_ok(&mut ctx.cargo(["nextest", "--version"])) {
        present(&version);
        return Ok(());
    }
    let thing = "cargo-nextest";
    doing(thing, "installing");
    context::run(&mut ctx.cargo_install(["cargo-nextest", "--locked"]))?;
    ok(thing);
    Ok(())
}

/// Step 4b: cargo-fuzz, which builds the fuzz targets in tests/fuzz for
/// `cargo xtask fuzz` (and the fuzz phase of `cargo xtask test`). They are
/// built with the eBPF crate's pinned Rust release (step 2) and
/// `RUSTC_BOOTSTRAP=1`: no nightly is needed, or fetched. libFuzzer itself
/// is compiled from source by `libfuzzer-sys` with the C++ compiler
/// (build-essential).
fn cargo_fuzz(ctx: &Context) -> Result<()> {
    let thing = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    match first_line_if_ok(&mut ctx.cargo(["fuzz", "--version"])) {
        Some(v) if v.split_whitespace().last() == Some(CARGO_FUZZ_VERSION) => {
            present(&v);
            return Ok(());
        }
        Some(v) => doing(&thing, &format!("replacing {v}")),
        None => doing(&thing, "installing"),
    }
    context::run(&mut ctx.cargo_install([
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
        "--force",
    ]))?;
    ok(&thing);
    Ok(())
}

/// Step 4c: cargo-deny, the dependency review (`deny.toml`) that `cargo
/// xtask deny` and the first check of `cargo xtask test` run.
fn cargo_deny(ctx: &Context) -> Result<()> {
    let version = crate::deny::CARGO_DENY_VERSION;
    let thing = format!("cargo-deny {version}");
    match first_line_if_ok(&mut ctx.cargo(["deny", "--version"])) {
        Some(v) if v.split_whitespace().last() == Some(version) => {
            present(&v);
            return Ok(());
        }
        Some(v) => doing(&thing, &format!("replacing {v}")),
        None => doing(&thing, "installing"),
    }
    context::run(&mut ctx.cargo_install([
        "cargo-deny",
        "--version",
        version,
        "--locked",
        "--force",
    ]))?;
    ok(&thing);
    Ok(())
}

/// Step 5a: bpffs, where sluice pins its programs and links.
fn bpffs(ctx: &Context) {
    let thing = format!("bpffs at {BPFFS}");
    if mounts()
        .iter()
        .any(|m| m.point == BPFFS && m.fstype == "bpf")
    {
        present(&thing);
        return;
    }
    doing(&thing, "mounting");
    match context::run(ctx.command("mount").args(["-t", "bpf", "bpf", BPFFS])) {
        Ok(()) => ok(&thing),
        Err(err) => warn(&thing, &format!("{err:#}; sluice cannot pin its programs")),
    }
}

/// Step 5b: cgroup v2, where jump-host mode attaches its cgroup programs.
/// On a hybrid hierarchy (as on this project's machines) it is the
/// `unified` mount; on a pure v2 system, /sys/fs/cgroup itself.
fn cgroup2() {
    let mounts = mounts();
    let found = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .find(|dir| {
            mounts
                .iter()
                .any(|m| m.point == *dir && m.fstype == "cgroup2")
        });
    match found {
        Some(dir) => present(&format!("cgroup v2 at {dir}")),
        None => warn(
            "cgroup v2",
            "not mounted at /sys/fs/cgroup/unified or /sys/fs/cgroup; jump-host mode cannot attach",
        ),
    }
}

/// Step 5c: kernel BTF, which aya reads to relocate the programs' BTF against
/// the running kernel.
fn btf() {
    let thing = format!("kernel BTF {BTF_VMLINUX}");
    if Path::new(BTF_VMLINUX).exists() {
        present(&thing);
    } else {
        warn(
            &thing,
            "missing; the kernel was built without CONFIG_DEBUG_INFO_BTF",
        );
    }
}

struct Mount {
    point: String,
    fstype: String,
}

/// This process's mount table (empty if /proc is unreadable).
fn mounts() -> Vec<Mount> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let point = fields.next()?.to_owned();
            let fstype = fields.next()?.to_owned();
            Some(Mount { point, fstype })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::start_mode;

    #[test]
    fn start_conf_mode() {
        for (text, want) in [
            ("# comment\n\nauto\n", "auto"),
            ("# comment\nmanual\n", "manual"),
            ("  disabled  \n", "disabled"),
            ("# only comments\n", "auto"),
        ] {
            assert_eq!(start_mode(text), want, "{text:?}");
        }
    }
}
