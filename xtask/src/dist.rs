//! `cargo xtask dist`: the release artifacts. Builds `sluice` (release),
//! makes its completions and man pages with the built binary, and writes
//! `dist/sluice-<version>-<arch>-linux.tar.gz` and
//! `dist/sluice_<version>_<debarch>.deb`.
//!
//! The tarball holds the binary, `deploy/` (unit, install and uninstall
//! scripts, example configs, Kubernetes manifests), `docs/`, `README.md`,
//! `completions/` and `man/`; `deploy/install.sh` run from inside it finds
//! everything beside itself. The .deb installs the same things at Debian's
//! paths (`/usr/bin/sluice`, `/lib/systemd/system/sluice.service`, the
//! gateway example as the conffile `/etc/sluice/sluice.toml`); its
//! maintainer scripts are `deploy/debian/{postinst,prerm,postrm}`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::context::{self, Context, capture};

/// Arguments for `cargo xtask dist`.
#[derive(clap::Args)]
pub struct DistArgs {
    /// Package this binary instead of building a release one (e.g.
    /// target/debug/sluice, for a quick check of the packaging).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Directory the artifacts are written to (default: dist/ in the
    /// workspace). Staging trees go under <target>/dist.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Who the .deb names as its maintainer.
const MAINTAINER: &str = "sluice developers <sluice@example.invalid>";

pub fn run(ctx: &Context, args: &DistArgs) -> Result<()> {
    for tool in ["tar", "gzip", "dpkg-deb"] {
        if capture(ctx.command(tool).arg("--version")).is_none() {
            bail!("`{tool}` is not installed (cargo xtask setup installs what dist needs)");
        }
    }
    let binary = match &args.binary {
        Some(b) => absolute(b)?,
        None => {
            // As `lab::build` does: the package by name, here in release.
            context::run(&mut ctx.cargo(["build", "-p", "sluice", "--release"]))
                .context("building sluice (release) failed (cargo's errors are above)")?;
            ctx.target_dir.join("release/sluice")
        }
    };
    if !binary.is_file() {
        bail!("{}: no such binary", binary.display());
    }
    let version = binary_version(ctx, &binary)?;
    let arch = std::env::consts::ARCH;
    let debarch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => bail!("no Debian architecture known for {other}"),
    };
    let out = match &args.out {
        Some(o) => absolute(o)?,
        None => ctx.root.join("dist"),
    };
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let staging = ctx.target_dir.join("dist");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing the old staging tree {}", staging.display()))?;
    }
    fs::create_dir_all(&staging)?;
    println!(
        "dist: sluice {version} for {arch} from {}",
        binary.display()
    );

    // The binary as shipped: debug info stripped (symbols stay, for
    // backtraces), when `strip` is there.
    let shipped = staging.join("sluice");
    fs::copy(&binary, &shipped).with_context(|| format!("copying {}", binary.display()))?;
    let mut strip = ctx.command("strip");
    strip.arg("--strip-debug").arg(&shipped);
    match capture(&mut strip) {
        Some(o) if o.status.success() => println!("dist: stripped debug info"),
        _ => println!("dist: `strip` unavailable or failed; shipping the binary as built"),
    }
    set_mode(&shipped, 0o755)?;

    // Completions and man pages, made by the binary from its own CLI.
    let generated = staging.join("generated");
    let completions = generated.join("completions");
    fs::create_dir_all(&completions)?;
    for (shell, file) in [
        ("bash", "sluice.bash"),
        ("zsh", "_sluice"),
        ("fish", "sluice.fish"),
    ] {
        let o = checked(ctx.command(&shipped).args(["completions", shell]))?;
        fs::write(completions.join(file), &o.stdout)?;
    }
    let man = generated.join("man");
    checked(ctx.command(&shipped).arg("man").arg("--out").arg(&man))?;
    let pages = sorted_entries(&man)?;
    if pages.is_empty() {
        bail!("`sluice man` wrote no pages into {}", man.display());
    }
    println!(
        "dist: {} man pages, completions for bash, zsh, fish",
        pages.len()
    );

    let tarball = tarball(ctx, &staging, &shipped, &generated, &out, &version, arch)?;
    let deb = deb(ctx, &staging, &shipped, &generated, &out, &version, debarch)?;

    println!("dist: artifacts");
    for artifact in [&tarball, &deb] {
        let size = fs::metadata(artifact)?.len();
        println!(
            "  {}  {:.1} MiB ({size} bytes)",
            artifact.display(),
            size as f64 / 1_048_576.0
        );
    }
    Ok(())
}

/// `sluice-<version>-<arch>-linux.tar.gz`: one top directory of that name.
fn tarball(
    ctx: &Context,
    staging: &Path,
    shipped: &Path,
    generated: &Path,
    out: &Path,
    version: &str,
    arch: &str,
) -> Result<PathBuf> {
    let name = format!("sluice-{version}-{arch}-linux");
    let top = staging.join("tar").join(&name);
    fs::create_dir_all(&top)?;
    copy_file(shipped, &top.join("sluice"), 0o755)?;
    copy_tree(&ctx.root.join("deploy"), &top.join("deploy"))?;
    copy_tree(&ctx.root.join("docs"), &top.join("docs"))?;
    copy_file(&ctx.root.join("README.md"), &top.join("README.md"), 0o644)?;
    copy_tree(&generated.join("completions"), &top.join("completions"))?;
    copy_tree(&generated.join("man"), &top.join("man"))?;
    let file = out.join(format!("{name}.tar.gz"));
    context::run(
        ctx.command("tar")
            .arg("-C")
            .arg(staging.join("tar"))
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-czf",
            ])
            .arg(&file)
            .arg(&name),
    )?;
    Ok(file)
}

/// `sluice_<version>_<debarch>.deb`, built with `dpkg-deb --root-owner-group`.
fn deb(
    ctx: &Context,
    staging: &Path,
    shipped: &Path,
    generated: &Path,
    out: &Path,
    version: &str,
    debarch: &str,
) -> Result<PathBuf> {
    let root = staging.join("deb");
    let deploy = ctx.root.join("deploy");
    let doc = root.join("usr/share/doc/sluice");

    copy_file(shipped, &root.join("usr/bin/sluice"), 0o755)?;
    let unit = fs::read_to_string(deploy.join("sluice.service"))?
        .replace("/usr/local/bin/sluice", "/usr/bin/sluice");
    write_file(
        &root.join("lib/systemd/system/sluice.service"),
        &unit,
        0o644,
    )?;
    let etc = root.join("etc/sluice");
    copy_file(
        &deploy.join("examples/gateway.toml"),
        &etc.join("sluice.toml"),
        0o640,
    )?;
    copy_file(
        &deploy.join("examples/secrets.toml.example"),
        &etc.join("secrets.toml.example"),
        0o600,
    )?;
    set_mode(&etc, 0o750)?;
    copy_tree(&deploy.join("examples"), &doc.join("examples"))?;
    copy_tree(&deploy.join("kubernetes"), &doc.join("kubernetes"))?;
    copy_tree(&ctx.root.join("docs"), &doc.join("docs"))?;
    copy_file(&ctx.root.join("README.md"), &doc.join("README.md"), 0o644)?;
    let comp = generated.join("completions");
    copy_file(
        &comp.join("sluice.bash"),
        &root.join("usr/share/bash-completion/completions/sluice"),
        0o644,
    )?;
    copy_file(
        &comp.join("_sluice"),
        &root.join("usr/share/zsh/vendor-completions/_sluice"),
        0o644,
    )?;
    copy_file(
        &comp.join("sluice.fish"),
        &root.join("usr/share/fish/vendor_completions.d/sluice.fish"),
        0o644,
    )?;
    let man1 = root.join("usr/share/man/man1");
    fs::create_dir_all(&man1)?;
    for page in sorted_entries(&generated.join("man"))? {
        let dest = man1.join(page.file_name().context("a page without a name")?);
        copy_file(&page, &dest, 0o644)?;
        // Debian ships man pages compressed; -n keeps the name and time out.
        context::run(ctx.command("gzip").args(["-9nf"]).arg(&dest))?;
    }

    let debian = root.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    for script in ["postinst", "prerm", "postrm"] {
        copy_file(
            &deploy.join("debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }
    write_file(
        &debian.join("conffiles"),
        "/etc/sluice/sluice.toml\n/etc/sluice/secrets.toml.example\n",
        0o644,
    )?;
    let depends = depends(ctx, staging, &root.join("usr/bin/sluice"))?;
    let installed_kib = tree_size(&root, &debian)?.div_ceil(1024);
    let control = format!(
        "Package: sluice\n\
         Version: {version}\n\
         Architecture: {debarch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Depends: {depends}\n\
         Recommends: bpftool\n\
         Section: net\n\
         Priority: optional\n\
         Description: transparent eBPF-steered interception proxy for database traffic\n \
         sluice runs on a gateway or jump host. eBPF programs steer connections\n \
         to protected PostgreSQL and MySQL/MariaDB databases into its proxy,\n \
         which identifies the workload, applies statement policy and masking,\n \
         holds statements for approval and records every session as signed,\n \
         tamper-evident audit evidence. Protected flows fail closed while the\n \
         proxy is down.\n \
         .\n \
         The package installs the daemon, its hardened systemd unit (not\n \
         enabled: edit /etc/sluice/sluice.toml first), man pages and shell\n \
         completions.\n"
    );
    write_file(&debian.join("control"), &control, 0o644)?;

    let file = out.join(format!("sluice_{version}_{debarch}.deb"));
    context::run(
        ctx.command("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&file),
    )?;
    Ok(file)
}

/// The shared libraries' packages, as Depends: `dpkg-shlibdeps` when
/// dpkg-dev is installed (versioned), else the packages owning what `ldd`
/// lists. `iproute2` always: gateway mode runs `ip rule` and `ip route`.
fn depends(ctx: &Context, staging: &Path, binary: &Path) -> Result<String> {
    // dpkg-shlibdeps wants a source tree: a debian/control is enough.
    let scratch = staging.join("shlibdeps");
    fs::create_dir_all(scratch.join("debian"))?;
    fs::write(
        scratch.join("debian/control"),
        "Source: sluice\n\nPackage: sluice\nArchitecture: any\n",
    )?;
    let mut shlibdeps = ctx.command("dpkg-shlibdeps");
    shlibdeps
        .current_dir(&scratch)
        .args(["-O", "-e"])
        .arg(binary);
    let libs = match capture(&mut shlibdeps) {
        Some(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("shlibs:Depends="))
            .map(str::to_owned),
        _ => None,
    };
    let libs = match libs {
        Some(l) => l,
        None => {
            println!("dist: dpkg-shlibdeps unavailable; Depends from ldd and dpkg -S");
            ldd_packages(ctx, binary)?.join(", ")
        }
    };
    Ok(format!("{libs}, iproute2"))
}

/// Packages owning the libraries `ldd` resolves for `binary`.
fn ldd_packages(ctx: &Context, binary: &Path) -> Result<Vec<String>> {
    let o = checked(ctx.command("ldd").arg(binary))?;
    let mut packages: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_owned)
        else {
            continue;
        };
        // Debian 12 is merged-/usr: dpkg knows /lib/..., the loader says either.
        let owner = capture(ctx.command("dpkg").args(["-S", &path]))
            .filter(|o| o.status.success())
            .or_else(|| {
                let other = path
                    .strip_prefix("/usr")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("/usr{path}"));
                capture(ctx.command("dpkg").args(["-S", &other])).filter(|o| o.status.success())
            });
        if let Some(o) = owner {
            let text = String::from_utf8_lossy(&o.stdout);
            if let Some(name) = text.split(':').next() {
                let name = name.trim().to_owned();
                if !packages.contains(&name) {
                    packages.push(name);
                }
            }
        }
    }
    if packages.is_empty() {
        packages.push("libc6".into());
    }
    Ok(packages)
}

/// "sluice 0.1.0" → "0.1.0".
fn binary_version(ctx: &Context, binary: &Path) -> Result<String> {
    let o = checked(ctx.command(binary).arg("--version"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let version = text
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("`{} --version` printed {text:?}", binary.display()))?;
    if !version.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("version {version:?} does not start with a digit, as Debian needs");
    }
    Ok(version.to_owned())
}

/// Runs `cmd` capturing its output; fails unless it succeeds.
fn checked(cmd: &mut std::process::Command) -> Result<std::process::Output> {
    let shown = context::show(cmd);
    let o = capture(cmd).with_context(|| format!("cannot start `{shown}`"))?;
    if !o.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(o)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(std::env::current_dir()
        .context("cannot read the current directory")?
        .join(p))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(to, mode)
}

fn write_file(to: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(to, text).with_context(|| format!("writing {}", to.display()))?;
    set_mode(to, mode)
}

/// Copies a directory of regular files and directories, keeping whether a
/// file is executable (0755) or not (0644).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in sorted_entries(from)? {
        let name = entry.file_name().context("an entry without a name")?;
        let meta = fs::symlink_metadata(&entry)?;
        if meta.is_dir() {
            copy_tree(&entry, &to.join(name))?;
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            copy_file(&entry, &to.join(name), mode)?;
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

/// Bytes of regular files under `dir`, leaving out `skip`.
fn tree_size(dir: &Path, skip: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in sorted_entries(dir)? {
        if entry == skip {
            continue;
        }
        let meta = fs::symlink_metadata(&entry)?;
        if meta.is_dir() {
            total += tree_size(&entry, skip)?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}
