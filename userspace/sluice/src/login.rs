//! `sluice login`: sign in at the OpenID provider with the device flow and
//! keep the ID token for later commands (`sluice approvals …`).
//!
//! The provider and the public client come from the configuration's
//! `[oidc]` section (`issuer`, `client_id`). The token is verified before it
//! is saved, so a login sluice would refuse fails here with the reason; it
//! is written mode 0600 to `--token-file`, else `$SLUICE_TOKEN_FILE`, else
//! `~/.config/sluice/token.json`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, anyhow};
use clap::Args;
use sluice_config::Config;
use sluice_oidc::{DevicePrompt, default_token_path, device_login, save_token};
use sluice_store::time::rfc3339;

/// `sluice login` arguments.
#[derive(Args)]
pub struct LoginArgs {
    /// Configuration file with the `[oidc]` section (issuer, client_id).
    #[arg(short, long, default_value = "/etc/sluice/sluice.toml")]
    config: PathBuf,
    /// Save the token here instead of $SLUICE_TOKEN_FILE or
    /// ~/.config/sluice/token.json.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Runs `sluice login`. Exit status 0: signed in; 2: could not.
pub fn run(args: LoginArgs) -> ExitCode {
    match login(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            ExitCode::from(2)
        }
    }
}

fn login(args: LoginArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let oidc = config.oidc.ok_or_else(|| {
        anyhow!(
            "{} has no [oidc] section: `sluice login` needs [oidc] with issuer and client_id",
            args.config.display()
        )
    })?;
    if oidc.client_id.is_none() {
        return Err(anyhow!(
            "{}: oidc.client_id is not set: `sluice login` needs the public client id registered at the provider for the device flow",
            args.config.display()
        ));
    }
    let path = args.token_file.unwrap_or_else(default_token_path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let tokens = runtime.block_on(device_login(&oidc, show_prompt))?;
    save_token(&path, &tokens)?;
    println!(
        "Signed in. Token saved to {} (valid until {}).",
        path.display(),
        rfc3339(tokens.expires_at.saturating_mul(1_000_000)).replace(".000000Z", "Z")
    );
    Ok(())
}

/// What to do, on standard output; the person may be on another device.
fn show_prompt(p: &DevicePrompt) {
    println!("To sign in, open this page in a browser (on any device):");
    println!();
    println!("    {}", p.verification_uri);
    println!();
    println!("and enter the code:  {}", p.user_code);
    if let Some(complete) = &p.verification_uri_complete {
        println!();
        println!("(or open {complete} , which has the code filled in)");
    }
    println!();
    println!(
        "The code expires in {} minutes. Waiting for you to sign in…",
        p.expires_in.div_ceil(60)
    );
}
