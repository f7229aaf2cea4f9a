//! `sluice run`: bind, attach, drop capabilities, serve, and tear down on a
//! signal.
mod caps;
mod control;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use sluice_config::Config;
use sluice_intercept::{Interceptor, Listeners};
use sluice_relay::{Mode, Relay, RelaySettings};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::watch,
};

/// How long sessions may finish after a stop signal.
const DRAIN: Duration = Duration::from_secs(5);

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    raise_file_limit(config.proxy.max_connections);
    let keep = caps::serving_set(config.jump_host.is_some());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        // Workers never attach anything: they start with the serving set.
        .on_thread_start(move || {
            if let Err(e) = caps::restrict_thread(keep) {
                tracing::error!(error = %e, "could not drop capabilities on a runtime thread");
            }
        })
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, config_path.to_owned(), keep))
}

/// Each session holds two sockets: raise the soft open-file limit to the
/// hard one (the unit sets both high; a shell or a container often leaves
/// the soft limit at 1024, which would cap sessions near 500), and say so
/// when even the hard limit is below what `max_connections` needs.
fn raise_file_limit(max_connections: u32) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit read and write the rlimit struct we own;
    // they have no other memory effects.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) != 0 {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        lim.rlim_cur < lim.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &raw const want) == 0
    };
    let limit = lim.rlim_max;
    let needed = u64::from(max_connections) * 2 + 64;
    if raised {
        tracing::debug!(limit, "open-file limit raised to the hard limit");
    }
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            max_connections,
            "the open-file limit is below two sockets per allowed session: sessions past it will fail to \
             open (raise LimitNOFILE, or lower [proxy] max_connections)"
        );
    }
}

async fn serve(config: Config, config_path: PathBuf, keep: caps::CapSet) -> anyhow::Result<()> {
    // Every file the configuration names is loaded before anything is
    // bound or attached: a bad certificate is a start-up error, not a
    // failure of the first session.
    let mut settings = RelaySettings::from_config(&config)?;
    // From a thread holding only the serving set: RocksDB's threads inherit
    // it.
    let store = std::thread::scope(|s| {
        s.spawn(|| {
            caps::restrict_thread(keep).context("dropping capabilities")?;
            open_store(&config)
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("opening the audit store panicked")))
    })?;
    settings.postgres.store = store.clone();
    tracing::info!(
        rules = config.policy.rules.len(),
        deny_patterns = config.policy.deny_patterns.len(),
        default = config.policy.default.as_str(),
        sensitive_columns = config.masking.columns.len(),
        "statement policy loaded"
    );
    if let Some(tls) = &config.tls {
        tracing::info!(cert = %tls.cert.display(), require = tls.require, "client TLS enabled");
    }
    // Listeners first: the programs are attached only once there is
    // somewhere to steer flows to.
    let mut bound: Vec<(TcpListener, Mode)> = Vec::new();
    let mut gw_v4 = None;
    let mut gw_v6 = None;
    if let Some(gw) = &config.gateway {
        let v4: SocketAddr = ([0, 0, 0, 0], gw.listen_port).into();
        gw_v4 = Some(
            sluice_relay::bind_transparent(v4)
                .with_context(|| format!("binding the transparent listener on {v4}"))?,
        );
        let v6: SocketAddr = (std::net::Ipv6Addr::UNSPECIFIED, gw.listen_port).into();
        match sluice_relay::bind_transparent(v6) {
            Ok(l) => gw_v6 = Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "no IPv6 transparent listener; IPv6 targets will fail closed")
            }
        }
    }
    let mut jump_v4 = None;
    let mut jump_v6 = None;
    if let Some(jh) = &config.jump_host {
        jump_v4 = Some(
            sluice_relay::bind_jump(jh.listen)
                .with_context(|| format!("binding the jump-host listener on {}", jh.listen))?,
        );
        if let Some(v6) = jh.listen_v6 {
            jump_v6 = Some(
                sluice_relay::bind_jump(v6)
                    .with_context(|| format!("binding the jump-host listener on {v6}"))?,
            );
        }
    }
    let listeners = Listeners {
        gateway_v4: gw_v4.as_ref().map(|l| l as &dyn std::os::fd::AsRawFd),
        gateway_v6: gw_v6.as_ref().map(|l| l as &dyn std::os::fd::AsRawFd),
        jump_v4: jump_v4
            .as_ref()
            .map(|l: &TcpListener| l.local_addr())
            .transpose()?,
        jump_v6: jump_v6
            .as_ref()
            .map(|l: &TcpListener| l.local_addr())
            .transpose()?,
    };
    let interceptor = Interceptor::start(&config, &listeners)?;
    // Attached: the loading and attaching capabilities go.
    caps::restrict_thread(keep).context("dropping capabilities after attach")?;
    tracing::info!(keep = %keep, "capabilities after attach");
    bound.extend(gw_v4.map(|l| (l, Mode::Gateway)));
    bound.extend(gw_v6.map(|l| (l, Mode::Gateway)));
    bound.extend(jump_v4.map(|l| (l, Mode::JumpHost)));
    bound.extend(jump_v6.map(|l| (l, Mode::JumpHost)));

    let (stop_tx, stop_rx) = watch::channel(false);
    let broker = settings.approvals.clone();
    let relay = Relay::new(settings, interceptor.facts(), stop_rx);
    let admin_log = control::admin_session(store.as_ref(), &config);
    if let (Some(b), Some(log)) = (&broker, &admin_log) {
        control::record_notices(b, Arc::clone(log));
    }
    let control = Arc::new(control::Control {
        relay: Arc::clone(&relay),
        broker: broker.clone(),
        counters: interceptor.counters(),
        admin_log: admin_log.clone(),
        store_path: config.store.enabled.then(|| config.store.path.clone()),
        store_health: store.as_ref().map(sluice_store::Store::health),
        config_path,
        config: Mutex::new(config.clone()),
    });
    let admin = control::start_admin(&config, &control).await?;
    let mut loops = Vec::new();
    for (listener, mode) in bound {
        tracing::info!(addr = %listener.local_addr()?, ?mode, "listening");
        loops.push(tokio::spawn(Arc::clone(&relay).serve(listener, mode)));
    }
    tracing::info!(
        pinned = interceptor.pinned().len(),
        "sluice is intercepting"
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let signal_name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = signal_name,
        "stopping: no new connections; detaching interception"
    );
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    let counters = interceptor.counters().snapshot();
    interceptor.stop();
    let summary: Vec<String> = counters
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(counters = %summary.join(" "), "interception removed: no programs, pins or routing rules remain");
    let left = relay.drain(DRAIN).await;
    if left > 0 {
        tracing::warn!(
            sessions = left,
            "sessions still open after the drain period; closing them"
        );
    }
    if let Some(admin) = admin {
        // Joins the API's thread (bounded): off the async workers.
        let _ = tokio::task::spawn_blocking(move || admin.stop()).await;
    }
    if let Some(log) = &admin_log {
        control::end_admin_session(log).await;
    }
    if let Some(store) = store {
        // Writes what is queued and a final signed checkpoint.
        store.close();
        tracing::info!("audit store closed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Open the session store, before anything is bound or attached: a store
/// that cannot be opened stops the start (fail closed).
fn open_store(config: &Config) -> anyhow::Result<Option<sluice_store::Store>> {
    if !config.store.enabled {
        tracing::warn!(
            "store.enabled = false: sessions are NOT recorded (PCI DSS requirement 10 needs them)"
        );
        return Ok(None);
    }
    crate::private_files();
    let options = sluice_relay::store_options(&config.store);
    let store = sluice_store::Store::open(&options).context("opening the audit store")?;
    tracing::info!(
        path = %options.path.display(),
        key = %options.key.display(),
        fingerprint = %store.public_key().fingerprint(),
        public_key = %store.public_key().to_text(),
        durability = ?options.durability,
        "audit store open"
    );
    Ok(Some(store))
}
