//! `cargo xtask lab|demo|bench`: build `sluice` and the `sluice-lab` driver,
//! then hand over to `sluice-lab` (this process is replaced by it).

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context as _, Result};
use clap::ValueEnum;

use crate::context::{self, Context};
use crate::setup;

/// Arguments for `cargo xtask lab`.
#[derive(clap::Args)]
pub struct LabArgs {
    /// What to do with the lab.
    #[arg(value_enum)]
    action: LabAction,
}

#[derive(Clone, Copy, ValueEnum)]
enum LabAction {
    /// Create the namespaces, links, servers and load sluice.
    Up,
    /// Remove everything `up` created.
    Down,
    /// Show what is up.
    Status,
}

impl LabAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Status => "status",
        }
    }
}

/// Arguments for `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Leave the lab running after the demo, to look around (`cargo xtask lab
    /// down` removes it).
    #[arg(long)]
    keep: bool,
}

/// Arguments for `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// A suite and its options, passed to `sluice-lab bench` as they are;
    /// none runs every suite (`--quick` for a short run). `cargo xtask bench
    /// --help` shows only this; `cargo xtask bench help` lists the suites.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Arguments for `cargo xtask soak`.
#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long the clients run, in minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
}

#[derive(Clone, Copy)]
enum Profile {
    Debug,
    Release,
}

pub fn lab(ctx: &Context, args: &LabArgs) -> Result<()> {
    let bin = build(ctx, Profile::Debug)?;
    Err(context::exec(
        lab_command(ctx, bin).args(["lab", args.action.as_str()]),
    ))
}

pub fn demo(ctx: &Context, args: &DemoArgs) -> Result<()> {
    setup::run(ctx)?;
    let bin = build(ctx, Profile::Debug)?;
    let mut cmd = lab_command(ctx, bin);
    cmd.arg("demo");
    if args.keep {
        cmd.arg("--keep");
    }
    Err(context::exec(&mut cmd))
}

pub fn bench(ctx: &Context, args: &BenchArgs) -> Result<()> {
    let bin = build(ctx, Profile::Release)?;
    Err(context::exec(
        lab_command(ctx, bin).arg("bench").args(&args.args),
    ))
}

pub fn soak(ctx: &Context, args: &SoakArgs) -> Result<()> {
    let bin = build(ctx, Profile::Release)?;
    Err(context::exec(lab_command(ctx, bin).args([
        "soak".to_owned(),
        "--minutes".to_owned(),
        args.minutes.to_string(),
    ])))
}

/// Builds the daemon and the lab driver; returns the driver's path.
fn build(ctx: &Context, profile: Profile) -> Result<PathBuf> {
    let mut cargo = ctx.cargo(["build", "-p", "sluice", "-p", "sluice-lab"]);
    let dir = match profile {
        Profile::Debug => "debug",
        Profile::Release => {
            cargo.arg("--release");
            "release"
        }
    };
    context::run(&mut cargo)
        .context("building sluice and sluice-lab failed (cargo's errors are above)")?;
    Ok(ctx.target_dir.join(dir).join("sluice-lab"))
}

/// `sluice-lab` run from the workspace root, with the terminal's stdin (the
/// demo may pause for the reader).
fn lab_command(ctx: &Context, bin: PathBuf) -> std::process::Command {
    let mut cmd = ctx.command(bin);
    cmd.stdin(Stdio::inherit());
    cmd
}
