//! Policy routing for gateway mode: packets carrying the intercept mark are
//! delivered locally (to the proxy's transparent listener) instead of being
//! forwarded. Without it the kernel drops steered SYNs silently.
//!
//! Installed idempotently (stale rules from a crashed run are removed first)
//! and removed on a clean stop. Uses iproute2, present on every gateway.
use std::process::Command;

use crate::InterceptError;

/// The rules and routes for one mark/table pair, both address families.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyRouting {
    pub mark: u32,
    pub table: u32,
}

impl PolicyRouting {
    /// Remove leftovers, then add the rule and the local route for IPv4 and IPv6.
    pub(crate) fn install(&self) -> Result<(), InterceptError> {
        self.remove();
        for family in ["-4", "-6"] {
            let any = if family == "-4" { "0.0.0.0/0" } else { "::/0" };
            ip(&[
                family,
                "route",
                "replace",
                "local",
                any,
                "dev",
                "lo",
                "table",
                &self.table.to_string(),
            ])?;
            ip(&[
                family,
                "rule",
                "add",
                "fwmark",
                &self.mark_arg(),
                "lookup",
                &self.table.to_string(),
            ])?;
        }
        Ok(())
    }

    /// Remove every rule and route this pair installed. Never fails: it runs
    /// on the way out and after crashes, where parts may already be gone.
    pub(crate) fn remove(&self) {
        for family in ["-4", "-6"] {
            // Bounded: a rule can only have been added a few times.
            for _ in 0..16 {
                let del = [
                    family,
                    "rule",
                    "del",
                    "fwmark",
                    &self.mark_arg(),
                    "lookup",
                    &self.table.to_string(),
                ];
                if ip(&del).is_err() {
                    break;
                }
            }
            let _ = ip(&[family, "route", "flush", "table", &self.table.to_string()]);
        }
    }

    /// Is any rule for this mark present? (`sluice cleanup` reports it.)
    pub(crate) fn present(&self) -> bool {
        ["-4", "-6"].iter().any(|family| {
            Command::new("ip")
                .args([family, "rule", "show", "fwmark", &self.mark_arg()])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false)
        })
    }

    fn mark_arg(&self) -> String {
        format!("{:#x}", self.mark)
    }
}

fn ip(args: &[&str]) -> Result<(), InterceptError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| InterceptError::Routing {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(InterceptError::Routing {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}
