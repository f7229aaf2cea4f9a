//! The deploy kit: `deploy/install.sh` and `uninstall.sh` into scratch
//! roots, the systemd unit checked by `systemd-analyze`, the Kubernetes
//! manifest parsed and its config checked by `sluice config check`, the
//! installed daemon started from the installed files under the unit's own
//! capability set and syscall filter, and `cargo xtask dist`'s .deb and
//! tarball taken apart and used.
//!
//! The daemon runs in a network namespace with only `lo` and in a private
//! mount namespace (`unshare --mount`) where the install root is the root
//! directory (chroot), read-only but for /var/lib/sluice, with a fresh
//! bpffs of its own at /sys/fs/bpf and a cgroup made for the test at
//! /sys/fs/cgroup/unified: the installed jump-host config's absolute paths
//! are the ones used, and nothing it pins or attaches is visible outside.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use sluice_lab::{
    Scratch, daemon::READY, netns::Netns, require_privileged, sluice_bin, topology::cgroup2_root,
    wait_for,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn deploy(script: &str) -> PathBuf {
    repo().join("deploy").join(script)
}

/// Run `sh <script> args…` (bounded); returns the output whatever the status.
fn sh(script: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-k", "5", "120", "sh"])
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `path` inside the install root.
fn at(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The step verbs install.sh and uninstall.sh print, with their subjects.
fn steps(out: &str) -> Vec<(String, String)> {
    const VERBS: &[&str] = &[
        "installed",
        "updated",
        "unchanged",
        "kept",
        "created",
        "skipped",
        "removed",
        "absent",
        "purged",
        "ran",
    ];
    out.lines()
        .filter_map(|l| {
            let (verb, rest) = l.split_once(' ')?;
            VERBS
                .contains(&verb)
                .then(|| (verb.to_owned(), rest.trim().to_owned()))
        })
        .collect()
}

fn install(root: &Path, mode: &str) -> String {
    let bin = sluice_bin();
    let out = sh(
        &deploy("install.sh"),
        &[
            "--mode",
            mode,
            "--binary",
            bin.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    ok(&out, "install.sh")
}

const MAN1: &str = "/usr/local/share/man/man1";
const COMPLETIONS: [&str; 3] = [
    "/usr/local/share/bash-completion/completions/sluice",
    "/usr/local/share/zsh/site-functions/_sluice",
    "/usr/local/share/fish/vendor_completions.d/sluice.fish",
];

#[test]
fn install_into_a_scratch_root_is_idempotent_and_uninstall_keeps_the_evidence() {
    let scratch = Scratch::new("deploy-install");
    let root = scratch.path("root");

    // --help teaches; a wrong mode is refused with a pointer to it.
    let help = ok(&sh(&deploy("install.sh"), &["--help"]), "install.sh --help");
    for word in [
        "--mode gateway|jump-host",
        "--root DIR",
        "--binary PATH",
        "never overwritten",
    ] {
        assert!(help.contains(word), "no {word} in --help:\n{help}");
    }
    let help = ok(
        &sh(&deploy("uninstall.sh"), &["--help"]),
        "uninstall.sh --help",
    );
    assert!(
        help.contains("--purge") && help.contains("evidence"),
        "{help}"
    );
    let bad = sh(
        &deploy("install.sh"),
        &["--mode", "router", "--root", "/nonexistent"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--mode must be gateway or jump-host"));

    // First install: everything in place with its mode.
    let first = install(&root, "gateway");
    let s = steps(&first);
    assert!(
        s.contains(&("installed".into(), "/usr/local/bin/sluice".into())),
        "{first}"
    );
    assert!(
        s.iter()
            .any(|(v, what)| v == "skipped" && what.starts_with("systemctl")),
        "a scratch root never runs systemctl:\n{first}"
    );
    for (path, want) in [
        ("/etc/sluice", 0o750),
        ("/var/lib/sluice", 0o700),
        ("/usr/local/bin/sluice", 0o755),
        ("/etc/sluice/sluice.toml", 0o640),
        ("/etc/sluice/secrets.toml.example", 0o600),
        ("/etc/sluice/token.key", 0o600),
        ("/etc/systemd/system/sluice.service", 0o644),
    ] {
        assert_eq!(mode(&at(&root, path)), want, "mode of {path}");
    }
    assert_eq!(
        fs::read(at(&root, "/usr/local/bin/sluice")).unwrap(),
        fs::read(sluice_bin()).unwrap()
    );
    assert_eq!(
        fs::read_to_string(at(&root, "/etc/sluice/sluice.toml")).unwrap(),
        fs::read_to_string(deploy("examples/gateway.toml")).unwrap()
    );
    assert_eq!(
        fs::read(at(&root, "/etc/sluice/token.key")).unwrap().len(),
        32
    );
    let unit = fs::read_to_string(at(&root, "/etc/systemd/system/sluice.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/sluice run --config /etc/sluice/sluice.toml"));
    for page in [
        "sluice.1",
        "sluice-run.1",
        "sluice-audit-export.1",
        "sluice-cleanup.1",
    ] {
        let p = at(&root, &format!("{MAN1}/{page}"));
        assert!(
            fs::metadata(&p).map(|m| m.len() > 100).unwrap_or(false),
            "{page}"
        );
    }
    for c in COMPLETIONS {
        let text = fs::read_to_string(at(&root, c)).unwrap_or_default();
        assert!(text.contains("audit") && text.contains("approvals"), "{c}");
    }

    // Second run, another mode, an edited config: nothing changes.
    let config = at(&root, "/etc/sluice/sluice.toml");
    let edited = fs::read_to_string(&config).unwrap() + "\n# edited by the operator\n";
    fs::write(&config, &edited).unwrap();
    let key = fs::read(at(&root, "/etc/sluice/token.key")).unwrap();
    let second = install(&root, "jump-host");
    for (verb, what) in steps(&second) {
        assert!(
            ["unchanged", "kept", "skipped"].contains(&verb.as_str()),
            "the second run changed {what} ({verb}):\n{second}"
        );
    }
    assert!(
        steps(&second)
            .iter()
            .any(|(v, w)| v == "kept" && w.starts_with("/etc/sluice/sluice.toml")),
        "{second}"
    );
    assert_eq!(fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(fs::read(at(&root, "/etc/sluice/token.key")).unwrap(), key);
    assert_eq!(mode(&config), 0o640);

    // Evidence, as the daemon would leave it.
    let store = at(&root, "/var/lib/sluice/store");
    fs::create_dir_all(&store).unwrap();
    fs::write(store.join("000001.log"), b"evidence").unwrap();

    let un = ok(
        &sh(&deploy("uninstall.sh"), &["--root", root.to_str().unwrap()]),
        "uninstall.sh",
    );
    let s = steps(&un);
    for gone in [
        "/usr/local/bin/sluice",
        "/etc/systemd/system/sluice.service",
    ]
    .into_iter()
    .chain(COMPLETIONS)
    {
        assert!(
            s.contains(&("removed".into(), gone.into())),
            "{gone} not removed:\n{un}"
        );
        assert!(!at(&root, gone).exists(), "{gone} still there");
    }
    let pages_left: Vec<_> = fs::read_dir(at(&root, MAN1)).unwrap().collect();
    assert!(pages_left.is_empty(), "man pages left: {pages_left:?}");
    assert!(
        s.iter()
            .any(|(v, w)| v == "kept" && w.starts_with("/var/lib/sluice")),
        "{un}"
    );
    assert!(un.contains("evidence"), "{un}");
    assert_eq!(fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(fs::read(store.join("000001.log")).unwrap(), b"evidence");

    // Again: harmless. Then --purge takes config and store.
    let again = ok(
        &sh(&deploy("uninstall.sh"), &["--root", root.to_str().unwrap()]),
        "uninstall.sh again",
    );
    assert!(steps(&again).iter().all(|(v, _)| v != "removed"), "{again}");
    let purge = ok(
        &sh(
            &deploy("uninstall.sh"),
            &["--root", root.to_str().unwrap(), "--purge"],
        ),
        "uninstall.sh --purge",
    );
    let s = steps(&purge);
    assert!(
        s.contains(&("purged".into(), "/etc/sluice".into())),
        "{purge}"
    );
    assert!(
        s.contains(&("purged".into(), "/var/lib/sluice".into())),
        "{purge}"
    );
    assert!(!at(&root, "/etc/sluice").exists() && !at(&root, "/var/lib/sluice").exists());
}

/// `systemd-analyze` on this machine, or why the check is skipped.
fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIP the systemd-analyze checks: systemd-analyze is not installed");
    }
    found.then_some("systemd-analyze")
}

#[test]
fn the_unit_passes_systemd_analyze_verify_and_is_hardened() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let scratch = Scratch::new("deploy-unit");
    // verify wants ExecStart's binary to exist: point it at the built one.
    let text = fs::read_to_string(deploy("sluice.service"))
        .unwrap()
        .replace("/usr/local/bin/sluice", sluice_bin().to_str().unwrap());
    let unit = scratch.path("sluice.service");
    fs::write(&unit, &text).unwrap();
    // --man=no: Documentation= names man pages this machine need not have.
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings to verify: none allowed.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );

    // The capabilities the issue allows, and no others.
    let caps = directive(&text, "CapabilityBoundingSet");
    assert_eq!(caps, ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
    assert_eq!(directive(&text, "AmbientCapabilities"), caps);
    for (key, want) in [
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "sluice"),
        ("NoNewPrivileges", "yes"),
        ("SystemCallArchitectures", "native"),
        ("ProtectKernelTunables", "yes"),
    ] {
        assert_eq!(directive(&text, key), [want], "{key}");
    }
    // Jump-host mode attaches to cgroups and reads other users' /proc/<pid>.
    for absent in [
        "ProtectControlGroups=",
        "ProtectProc=",
        "ProcSubset=",
        "PrivateNetwork=",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(absent)),
            "{absent} must not be set"
        );
    }

    // systemd's own exposure score (10 = unconfined). The unit before the
    // hardening scored 7.0, after it 2.6 (systemd 252).
    let out = Command::new(analyze)
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for sluice.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 3.5, "exposure {score}:\n{report}");
}

/// The words of `key=` in a unit (all lines, in order).
fn directive(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

/// A python3 that has PyYAML (Debian's python3-yaml, from `cargo xtask setup`).
fn python_with_yaml() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_kubernetes_manifest_parses_and_its_config_checks() {
    let Some(python) = python_with_yaml() else {
        if std::env::var("SLUICE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("no python3 with PyYAML: cargo xtask setup installs python3-yaml");
        }
        eprintln!("SKIP: no python3 with PyYAML (cargo xtask setup installs python3-yaml)");
        return;
    };
    let manifest = deploy("kubernetes/daemonset.yaml");
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(&manifest)
        .output()
        .unwrap();
    let json = ok(&out, "PyYAML on the manifest");
    let docs: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kinds: Vec<&str> = docs
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "DaemonSet"]);
    let cm = &docs[1];
    let ds = &docs[2];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["nodeSelector"]["sluice.example/gateway"], "true");
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["BPF", "NET_ADMIN", "PERFMON"])
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let host_path = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("no hostPath volume {name}"))
            .to_owned()
    };
    assert_eq!(host_path("bpffs"), "/sys/fs/bpf");
    assert_eq!(host_path("state"), "/var/lib/sluice");
    let mounts = c["volumeMounts"].as_array().unwrap();
    for (name, path) in [
        ("bpffs", "/sys/fs/bpf"),
        ("state", "/var/lib/sluice"),
        ("config", "/etc/sluice/sluice.toml"),
    ] {
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == name && m["mountPath"] == path),
            "{name} not mounted at {path}"
        );
    }

    // The ConfigMap's config is a valid sluice config, and the probe asks
    // its admin API's /healthz.
    let toml = cm["data"]["sluice.toml"].as_str().unwrap();
    let scratch = Scratch::new("deploy-k8s");
    let cfg = scratch.path("sluice.toml");
    fs::write(&cfg, toml).unwrap();
    let check = Command::new(sluice_bin())
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report = ok(&check, "sluice config check on the ConfigMap's config");
    assert!(report.contains("gateway: on"), "{report}");
    let listen = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen = "))
        .expect("an [admin] listen")
        .trim_matches('"');
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let probe = &c["livenessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/healthz");
    assert_eq!(probe["port"], port);
    assert_eq!(
        probe["host"],
        listen.rsplit_once(':').unwrap().0,
        "the kubelet must dial the address the admin API listens on"
    );
}

/// The cgroup the daemon sees as /sys/fs/cgroup/unified (its `agents`
/// child is the installed jump-host config's cgroup), removed on drop.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let agents = self.0.join("agents");
        let _ = wait_for(Duration::from_secs(5), || {
            (!agents.exists() || fs::remove_dir(&agents).is_ok()).then_some(())
        });
        let _ = wait_for(Duration::from_secs(5), || fs::remove_dir(&self.0).ok());
    }
}

/// A process holding a private mount namespace; killed on drop, which
/// takes every mount made in it (and the bpffs with its pins) away.
struct MountNs {
    holder: Child,
}

impl MountNs {
    fn new() -> MountNs {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --mount");
        let ns = MountNs { holder };
        let mine = fs::read_link("/proc/self/ns/mnt").unwrap();
        let entered = wait_for(Duration::from_secs(5), || {
            let link = fs::read_link(ns.ns_path()).ok()?;
            (link != mine).then_some(())
        });
        assert!(entered.is_some(), "unshare made no mount namespace");
        ns
    }

    fn ns_path(&self) -> String {
        format!("/proc/{}/ns/mnt", self.holder.id())
    }

    /// A command run in this mount namespace.
    fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount={}", self.ns_path()))
            .arg("--")
            .args(argv);
        c
    }

    fn run(&self, argv: &[&str]) -> String {
        let out = self.command(argv).output().unwrap();
        ok(&out, &format!("{argv:?} in the mount namespace"))
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The daemon (and strace, when it traces it) in a process group of its
/// own; the whole group is killed if a test fails while it runs.
struct Running(Option<Child>);

impl Running {
    fn signal(&self, sig: &str) {
        if let Some(c) = &self.0 {
            let _ = Command::new("kill")
                .args([sig, "--", &format!("-{}", c.id())])
                .status();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.signal("-KILL");
        if let Some(mut c) = self.0.take() {
            let _ = c.wait();
        }
    }
}

#[test]
fn the_installed_daemon_runs_from_the_installed_files_in_the_units_sandbox() {
    if !require_privileged("the_installed_daemon_runs_from_the_installed_files") {
        return;
    }
    let scratch = Scratch::new("deploy-run");
    let root = scratch.path("root");
    install(&root, "jump-host");
    let unit = fs::read_to_string(at(&root, "/etc/systemd/system/sluice.service")).unwrap();
    let exec_start = directive(&unit, "ExecStart");
    assert_eq!(exec_start[0], "/usr/local/bin/sluice");
    // setpriv's spelling of the unit's capability set: the daemon gets
    // exactly these, as systemd would give them to a root service.
    let caps: Vec<String> = directive(&unit, "CapabilityBoundingSet")
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    let bounding = format!("-all,+{}", caps.join(",+"));

    // The cgroup the installed config names, made for the test.
    let cgroup = TestCgroup(cgroup2_root().join("sluice-lab-deploy"));
    let _ = fs::remove_dir(cgroup.0.join("agents"));
    fs::create_dir_all(cgroup.0.join("agents")).unwrap();

    // The sandbox: ProtectSystem=strict (the root read-only), the state
    // directory and bpffs writable (StateDirectory, ReadWritePaths),
    // PrivateTmp; /proc, /sys, /dev and the host's libraries and tools
    // (setpriv) bound in.
    for dir in [
        "proc",
        "sys",
        "dev",
        "tmp",
        "usr/lib",
        "usr/lib64",
        "usr/bin",
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    for (link, target) in [
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    let r = root.to_str().unwrap();
    let p = |rel: &str| format!("{r}/{rel}");
    let mnt = MountNs::new();
    mnt.run(&["mount", "--bind", r, r]);
    mnt.run(&["mount", "-o", "remount,bind,ro", r]);
    let state = p("var/lib/sluice");
    mnt.run(&["mount", "--bind", &state, &state]);
    mnt.run(&["mount", "-o", "remount,bind,rw", &state]);
    for (host, inside) in [("/proc", "proc"), ("/sys", "sys"), ("/dev", "dev")] {
        mnt.run(&["mount", "--rbind", host, &p(inside)]);
    }
    for lib in ["/usr/lib", "/usr/lib64", "/usr/bin"] {
        if !Path::new(lib).exists() {
            continue;
        }
        mnt.run(&["mount", "--bind", "-o", "ro", lib, &p(&lib[1..])]);
    }
    mnt.run(&["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", &p("tmp")]);
    mnt.run(&["mount", "-t", "bpf", "bpf", &p("sys/fs/bpf")]);
    mnt.run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "tmpfs",
        &p("sys/fs/cgroup"),
    ]);
    mnt.run(&["mkdir", &p("sys/fs/cgroup/unified")]);
    mnt.run(&[
        "mount",
        "--bind",
        cgroup.0.to_str().unwrap(),
        &p("sys/fs/cgroup/unified"),
    ]);
    let probe = mnt.run(&["chroot", r, "/usr/local/bin/sluice", "--version"]);
    assert!(probe.starts_with("sluice "), "{probe}");
    let readonly = mnt
        .command(&["chroot", r, "/usr/bin/touch", "/etc/sluice/x"])
        .output()
        .unwrap();
    assert!(!readonly.status.success(), "the root is not read-only");

    // The network: a namespace with only `lo`.
    let net = Netns::create("sl-deploy");

    let log = scratch.path("sluice.log");
    let trace = scratch.path("strace.out");
    let strace = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !strace {
        eprintln!("NOTE: strace is not installed; the syscall filter is not checked");
    }
    let mut argv: Vec<String> = vec![
        "nsenter".into(),
        format!("--mount={}", mnt.ns_path()),
        format!("--net={}", net.path()),
        "--".into(),
    ];
    if strace {
        argv.extend(["strace", "-f", "-qq", "-o"].map(String::from));
        argv.push(trace.to_str().unwrap().into());
    }
    argv.extend(
        [
            "chroot",
            r,
            "/usr/bin/setpriv",
            "--bounding-set",
            &bounding,
            "--no-new-privs",
            "--",
        ]
        .map(String::from),
    );
    argv.extend(exec_start.iter().cloned());
    let logfile = fs::File::create(&log).unwrap();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .process_group(0)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().unwrap())
        .stderr(logfile)
        .spawn()
        .expect("start the installed sluice");
    let mut daemon = Running(Some(child));
    let log_text = || fs::read_to_string(&log).unwrap_or_default();
    let ready = wait_for(Duration::from_secs(60), || {
        if log_text().contains(READY) {
            return Some(true);
        }
        match daemon.0.as_mut().unwrap().try_wait() {
            Ok(Some(_)) => Some(false),
            _ => None,
        }
    });
    assert_eq!(
        ready,
        Some(true),
        "the installed sluice did not become ready:\n{}",
        log_text()
    );

    // It runs as installed: the state directory holds its store and the
    // signing key it made, the pins are in its bpffs, its programs are on
    // the cgroup, its listener on the config's address.
    let key = at(&root, "/var/lib/sluice/audit-signing.key");
    assert_eq!(mode(&key), 0o600);
    assert!(at(&root, "/var/lib/sluice/audit-signing.key.pub").exists());
    assert_eq!(mode(&at(&root, "/var/lib/sluice/store")), 0o700);
    let pins = mnt.run(&["ls", "-A", &p("sys/fs/bpf/sluice")]);
    assert!(!pins.trim().is_empty(), "nothing pinned:\n{}", log_text());
    let agents = cgroup.0.join("agents");
    let attached = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&agents)
        .output();
    if let Ok(out) = &attached {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("connect4"),
            "not attached to {}:\n{text}",
            agents.display()
        );
    }
    let listening = net.run(&["ss", "-Hltn"]);
    assert!(listening.contains("127.0.0.1:15433"), "{listening}");

    // SIGTERM to the group: a clean stop that leaves nothing behind.
    // (strace, when there, blocks it and passes the daemon's own on.)
    daemon.signal("-TERM");
    let mut c = daemon.0.take().unwrap();
    let status = wait_for(Duration::from_secs(25), || c.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = c.kill();
        panic!(
            "the installed sluice did not stop within 25 s:\n{}",
            log_text()
        );
    };
    assert!(status.success(), "exit {status}:\n{}", log_text());
    let pins = mnt.run(&[
        "sh",
        "-c",
        &format!("ls -A {} 2>/dev/null || true", p("sys/fs/bpf/sluice")),
    ]);
    assert!(pins.trim().is_empty(), "pins left: {pins}");
    if let Ok(out) = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(&agents)
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("connect"),
            "programs left on the cgroup:\n{text}"
        );
    }
    assert!(!log_text().contains("ERROR"), "{}", log_text());

    if strace {
        check_syscalls(&fs::read_to_string(&trace).unwrap(), &unit);
    }

    // Uninstall keeps what the daemon recorded.
    drop(mnt);
    let un = ok(&sh(&deploy("uninstall.sh"), &["--root", r]), "uninstall.sh");
    assert!(un.contains("evidence"), "{un}");
    assert!(key.exists() && at(&root, "/var/lib/sluice/store").exists());
    assert!(!at(&root, "/usr/local/bin/sluice").exists());
}

/// Every syscall the daemon made (in `trace`, from its execve on) is one
/// the unit's SystemCallFilter allows, as `systemd-analyze syscall-filter`
/// expands it.
fn check_syscalls(trace: &str, unit: &str) {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let out = Command::new(analyze)
        .arg("syscall-filter")
        .output()
        .unwrap();
    let groups = parse_groups(&ok(&out, "systemd-analyze syscall-filter"));
    let mut allowed = BTreeSet::new();
    for item in directive(unit, "SystemCallFilter") {
        expand(&item, &groups, &mut allowed);
    }
    assert!(allowed.contains("bpf") && allowed.contains("openat"));

    let mut used = BTreeSet::new();
    let mut started = false;
    for line in trace.lines() {
        if !started {
            started = line.contains("execve(\"/usr/local/bin/sluice\"");
            continue;
        }
        // "1234  name(args…" (also "<... name resumed>", skipped)
        let call = line
            .split_once(' ')
            .map(|(_, rest)| rest.trim_start())
            .and_then(|rest| rest.split_once('('))
            .map(|(name, _)| name);
        if let Some(name) = call
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !name.is_empty()
        {
            used.insert(name.to_owned());
        }
    }
    assert!(started, "no execve of sluice in the trace");
    let outside: Vec<_> = used.difference(&allowed).collect();
    eprintln!("syscalls made by the daemon: {}", used.len());
    assert!(
        outside.is_empty(),
        "the daemon made syscalls SystemCallFilter= refuses: {outside:?}"
    );
}

/// `systemd-analyze syscall-filter` output: group → members (names and
/// nested `@groups`).
fn parse_groups(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_owned());
            groups.entry(line.trim().to_owned()).or_default();
        } else if let Some(g) = &current {
            let item = line.trim();
            if !item.is_empty() && !item.starts_with('#') {
                groups.get_mut(g).unwrap().push(item.to_owned());
            }
        }
    }
    groups
}

fn expand(item: &str, groups: &BTreeMap<String, Vec<String>>, into: &mut BTreeSet<String>) {
    if item.starts_with('@') {
        for member in groups.get(item).into_iter().flatten() {
            expand(member, groups, into);
        }
    } else {
        into.insert(item.to_owned());
    }
}

#[test]
fn dist_makes_a_deb_and_a_tarball_that_install() {
    if !require_privileged("dist_makes_a_deb_and_a_tarball_that_install") {
        return;
    }
    let xtask = sluice_lab::target_dir().join("debug/xtask");
    assert!(
        xtask.exists(),
        "no {}: build the workspace first (cargo build --workspace)",
        xtask.display()
    );
    let scratch = Scratch::new("deploy-dist");
    let out_dir = scratch.path("dist");
    let bin = sluice_bin();
    let out = Command::new("timeout")
        .args(["-k", "5", "300"])
        .arg(&xtask)
        .args(["dist", "--binary"])
        .arg(&bin)
        .arg("--out")
        .arg(&out_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = ok(&out, "cargo xtask dist --binary");
    let version =
        String::from_utf8_lossy(&Command::new(&bin).arg("--version").output().unwrap().stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
    let deb = out_dir.join(format!("sluice_{version}_amd64.deb"));
    let tarball = out_dir.join(format!("sluice-{version}-x86_64-linux.tar.gz"));
    for artifact in [&deb, &tarball] {
        assert!(artifact.exists(), "no {}:\n{report}", artifact.display());
        assert!(report.contains(artifact.to_str().unwrap()), "{report}");
    }
    assert!(report.contains("MiB"), "sizes are printed:\n{report}");

    // What the .deb holds, and as whom.
    let listing = ok(
        &Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap(),
        "dpkg-deb -c",
    );
    for path in [
        "./usr/bin/sluice",
        "./lib/systemd/system/sluice.service",
        "./etc/sluice/sluice.toml",
        "./usr/share/man/man1/sluice.1.gz",
        "./usr/share/man/man1/sluice-audit-export.1.gz",
        "./usr/share/bash-completion/completions/sluice",
        "./usr/share/zsh/vendor-completions/_sluice",
        "./usr/share/fish/vendor_completions.d/sluice.fish",
        "./usr/share/doc/sluice/examples/jump-host.toml",
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the .deb:\n{listing}"));
        assert!(line.contains("root/root"), "{line}");
    }
    let config_line = listing
        .lines()
        .find(|l| l.ends_with(" ./etc/sluice/sluice.toml"))
        .unwrap();
    assert!(config_line.starts_with("-rw-r-----"), "{config_line}");
    let info = ok(
        &Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .output()
            .unwrap(),
        "dpkg-deb -I",
    );
    for field in [
        "Package: sluice".to_owned(),
        format!("Version: {version}"),
        "Architecture: amd64".to_owned(),
        "Maintainer: ".to_owned(),
        "Section: net".to_owned(),
        "Description: ".to_owned(),
    ] {
        assert!(info.contains(&field), "no {field} in:\n{info}");
    }
    let depends = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{info}"));
    assert!(
        depends.contains("libc6") && depends.contains("iproute2"),
        "{depends}"
    );
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "no {script} in:\n{info}");
    }
    let conffiles = ok(
        &Command::new("dpkg-deb")
            .args(["-I"])
            .arg(&deb)
            .arg("conffiles")
            .output()
            .unwrap(),
        "dpkg-deb -I conffiles",
    );
    assert!(
        conffiles.lines().any(|l| l == "/etc/sluice/sluice.toml"),
        "{conffiles}"
    );

    // Unpacked, its binary runs and its unit starts it.
    let x = scratch.path("x");
    ok(
        &Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&x)
            .output()
            .unwrap(),
        "dpkg -x",
    );
    let v = ok(
        &Command::new(x.join("usr/bin/sluice"))
            .arg("--version")
            .output()
            .unwrap(),
        "the .deb's sluice --version",
    );
    assert_eq!(v.trim(), format!("sluice {version}"));
    let unit = fs::read_to_string(x.join("lib/systemd/system/sluice.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/sluice run"), "{unit}");

    // The tarball: one top directory; its install.sh installs what is
    // beside it (binary, man pages, completions) without --binary.
    let top = format!("sluice-{version}-x86_64-linux");
    let names = ok(
        &Command::new("tar")
            .arg("-tzf")
            .arg(&tarball)
            .output()
            .unwrap(),
        "tar -t",
    );
    for f in [
        "sluice",
        "deploy/install.sh",
        "deploy/uninstall.sh",
        "deploy/sluice.service",
        "deploy/examples/gateway.toml",
        "deploy/kubernetes/daemonset.yaml",
        "README.md",
        "completions/sluice.bash",
        "man/sluice.1",
        "man/sluice-audit-export.1",
    ] {
        let want = format!("{top}/{f}");
        assert!(names.lines().any(|l| l == want), "no {want} in the tarball");
    }
    assert!(
        names
            .lines()
            .any(|l| l.starts_with(&format!("{top}/docs/")))
    );
    let unpacked = scratch.path("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    ok(
        &Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&unpacked)
            .output()
            .unwrap(),
        "tar -x",
    );
    let root = scratch.path("root");
    let installed = ok(
        &sh(
            &unpacked.join(&top).join("deploy/install.sh"),
            &["--mode", "gateway", "--root", root.to_str().unwrap()],
        ),
        "the tarball's install.sh",
    );
    assert!(
        steps(&installed).contains(&("installed".into(), "/usr/local/bin/sluice".into())),
        "{installed}"
    );
    assert_eq!(
        fs::read(at(&root, "/usr/local/bin/sluice")).unwrap(),
        fs::read(unpacked.join(&top).join("sluice")).unwrap()
    );
    assert_eq!(
        fs::read(at(&root, &format!("{MAN1}/sluice-audit-export.1"))).unwrap(),
        fs::read(unpacked.join(&top).join("man/sluice-audit-export.1")).unwrap()
    );
}
