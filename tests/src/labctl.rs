//! `sluice-lab lab up|down|status`: a persistent gateway lab to try by hand.
//!
//! `up` builds the same topology the tests use (tag `lab`) and leaves it
//! running; what it started is written to a state file so `down` can take it
//! all away again.
use std::{fs, path::PathBuf, time::Duration};

use anyhow::bail;

use crate::{
    netns::sh,
    postgres::conninfo,
    scenario::{self, GatewayRun},
};

pub const TAG: &str = "lab";
const INDEX: u8 = 20;

fn state_file() -> PathBuf {
    PathBuf::from("/run/sluice-lab/state")
}

pub fn up() -> anyhow::Result<()> {
    if state_file().exists() {
        bail!(
            "a lab is already up (see `cargo xtask lab status`; `cargo xtask lab down` removes it)"
        );
    }
    let r = scenario::start(TAG, INDEX, "");
    keep(r)
}

/// Leave a running lab in place: its guards are forgotten on purpose and
/// `down` removes what the state file lists.
pub fn keep(r: GatewayRun) -> anyhow::Result<()> {
    fs::create_dir_all(state_file().parent().unwrap())?;
    let state = format!(
        "agent={}\ngw={}\ndb={}\nconfig={}\nlog={}\nscratch={}\n",
        r.lab.agent.name,
        r.lab.gw.name,
        r.lab.db.name,
        r.daemon.config.display(),
        r.daemon.log.display(),
        r.scratch.0.display()
    );
    fs::write(state_file(), state)?;
    print_howto(&r);
    std::mem::forget(r);
    Ok(())
}

/// Leave the demo's lab running (`cargo xtask demo --keep`), as [`keep`]
/// does for the plain lab: `down` stops sluice and removes every namespace
/// (and the processes in them: the databases, the OpenID provider).
/// Fails if a lab from `lab up` or `demo --keep` is still up: there is
/// one state file, so only one kept lab at a time.
pub fn refuse_if_up() -> anyhow::Result<()> {
    if state_file().exists() {
        bail!("a lab is already up (`cargo xtask lab down` removes it); run this again after that");
    }
    Ok(())
}

pub fn keep_demo(d: crate::demo::DemoLab) -> anyhow::Result<()> {
    refuse_if_up()?;
    fs::create_dir_all(state_file().parent().unwrap())?;
    let mut state = format!(
        "gw={}\nconfig={}\nlog={}\nscratch={}\n",
        d.lab.gw.name,
        d.daemon.config.display(),
        d.daemon.log.display(),
        d.scratch.0.display()
    );
    for ns in d.namespaces() {
        state.push_str(&format!("netns={ns}\n"));
    }
    fs::write(state_file(), state)?;
    std::mem::forget(d);
    Ok(())
}

pub fn print_howto(r: &GatewayRun) {
    println!("The lab is up:");
    println!(
        "  agent host   netns {:<14} {}",
        r.lab.agent.name, r.lab.agent_ip
    );
    println!(
        "  gateway      netns {:<14} {} | {}  (sluice runs here)",
        r.lab.gw.name, r.lab.gw_agent_ip, r.lab.gw_db_ip
    );
    println!(
        "  database     netns {:<14} {} / {} port 5432 (PostgreSQL 15)",
        r.lab.db.name, r.lab.db_ip, r.lab.db_ip6
    );
    println!();
    println!("Try it (unmodified psql on the agent host, dialling the database's own address):");
    println!(
        "  nsenter --net=/run/netns/{} psql \"{}\" -c 'select inet_client_addr(), * from cards'",
        r.lab.agent.name,
        conninfo(&r.lab.db_ip, 5432)
    );
    println!("Watch sluice:   tail -f {}", r.daemon.log.display());
    println!(
        "Its counters:   nsenter --net=/run/netns/{} bpftool net show",
        r.lab.gw.name
    );
    println!("Take it down:   cargo xtask lab down");
}

pub fn down() -> anyhow::Result<()> {
    let Ok(state) = fs::read_to_string(state_file()) else {
        println!("no lab is up");
        return Ok(());
    };
    let get = |k: &str| {
        state
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_owned()
    };
    let gw = get("gw");
    // Stop sluice cleanly first (it removes its programs and rules).
    if let Ok(out) = sh(&["ip", "netns", "pids", &gw]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = sh(&["kill", "-TERM", pid]);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = sh(&[
        "nsenter",
        &format!("--net=/run/netns/{gw}"),
        "--",
        crate::sluice_bin().to_str().unwrap(),
        "cleanup",
        "--config",
        &get("config"),
    ]);
    let mut namespaces: Vec<String> = state
        .lines()
        .filter_map(|l| l.strip_prefix("netns="))
        .map(str::to_owned)
        .collect();
    for ns in [get("agent"), gw.clone(), get("db")] {
        if !ns.is_empty() && !namespaces.contains(&ns) {
            namespaces.push(ns);
        }
    }
    for ns in namespaces {
        if let Ok(out) = sh(&["ip", "netns", "pids", &ns]) {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = sh(&["kill", "-9", pid]);
            }
        }
        let _ = sh(&["ip", "netns", "del", &ns]);
        println!("removed netns {ns}");
    }
    let scratch = get("scratch");
    if !scratch.is_empty() {
        let _ = fs::remove_dir_all(&scratch);
    }
    fs::remove_file(state_file())?;
    println!("lab is down");
    Ok(())
}

pub fn status() -> anyhow::Result<()> {
    let Ok(state) = fs::read_to_string(state_file()) else {
        println!("no lab is up (`cargo xtask lab up` starts one)");
        return Ok(());
    };
    print!("{state}");
    let netns = String::from_utf8_lossy(&sh(&["ip", "netns", "list"])?.stdout).into_owned();
    println!("namespaces present:\n{netns}");
    Ok(())
}
