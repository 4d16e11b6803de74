//! `run`: open the store, start ingest, admin and the scheduler, tell
//! systemd, apply config reloads, and on shutdown drain in order and flush.

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::delivery::{DeliveryContext, DeliverySettings};
use crate::error::{Error, Result};
use crate::ingest::{self, IngestSettings, IngestState};
use crate::logging::LogControl;
use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::netpolicy::AddressPolicy;
use crate::outbound::{Outbound, OutboundConfig};
use crate::registry::Registry;
use crate::reload::{Live, Reloader};
use crate::retry::RetryPolicy;
use crate::scheduler::{self, ControlSettings, SchedulerStats, UplinkSettings, Wakeup};
use crate::store::{Store, StoreOptions};
use crate::systemd::{self, Notifier};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The sockets the daemon serves, bound before `run` (port 0 in tests).
pub struct Listeners {
    pub ingest: std::net::TcpListener,
    pub admin: std::os::unix::net::UnixListener,
}

impl Listeners {
    /// Binds the ingest address and the admin socket of `config`.
    pub fn bind(config: &Config) -> Result<Listeners> {
        let ingest =
            std::net::TcpListener::bind(config.ingest.listen).map_err(|e| Error::ConfigValue {
                key: "ingest.listen".into(),
                reason: format!("cannot listen on {}: {e}", config.ingest.listen),
            })?;
        ingest
            .set_nonblocking(true)
            .map_err(|e| Error::io("ingest socket", e))?;
        let admin = admin::bind_socket(&config.admin)?;
        Ok(Listeners { ingest, admin })
    }
}

/// How the outside steers a running daemon: `main` wires signals and
/// systemd to it, a test its own future, channel and socket.
pub struct Control<S> {
    /// Resolves to stop the daemon (SIGTERM, SIGINT).
    pub shutdown: S,
    /// Configs to apply while running (SIGHUP), each already loaded and validated.
    pub reloads: mpsc::Receiver<Config>,
    /// The log subscriber's level, when this process installed one.
    pub log: Option<LogControl>,
    /// Where `READY=1`, watchdog pings and start-up extensions go.
    pub notifier: Notifier,
}

/// Runs the daemon until `control.shutdown` resolves (or the store fails,
/// which is an error).
pub async fn run<S: Future<Output = ()>>(
    config: Config,
    listeners: Listeners,
    control: Control<S>,
) -> Result<()> {
    let Control {
        shutdown,
        mut reloads,
        log,
        notifier,
    } = control;
    let started_at = now_ms();
    let store_path = config.storage.path.clone();
    let cache = config.storage.cache.0;
    let store = tokio::task::spawn_blocking(move || {
        Store::open(StoreOptions {
            path: &store_path,
            cache_bytes: cache,
        })
    });
    let store = notifier
        .extend_start_while(store)
        .await
        .map_err(|e| Error::Flush(e.to_string()))??;
    let registry = Arc::new(Registry::load(&store)?);
    let metrics = Arc::new(Metrics::default());
    let wakeup = Arc::new(Wakeup::default());
    let stats = Arc::new(SchedulerStats::default());
    let policy = AddressPolicy::new(config.delivery.allow_networks.clone());
    let outbound = Outbound::new(OutboundConfig {
        policy: policy.clone(),
        connect_timeout: config.delivery.timeout.0.min(Duration::from_secs(10)),
        pool_idle_timeout: Duration::from_secs(60),
        // No cap of its own: the idle connections to a host are at most the
        // attempts that were in flight to it at once, which
        // `delivery.max_in_flight_total` bounds, as reloaded. A pool that
        // keeps fewer closes the rest after a burst and connects again for
        // the next one (with 10 subscriptions on one host, connects were a
        // sixth of the delivery workers' CPU under a cap of 64).
        max_idle_per_host: usize::MAX,
        proxy: config.delivery.proxy_uri().ok().flatten(),
        resolver: None,
    });
    let delivery = Arc::new(DeliveryContext {
        store: store.clone(),
        registry: registry.clone(),
        outbound,
        settings: RwLock::new(Arc::new(delivery_settings(&config))),
        control: RwLock::new(Arc::new(control_settings(&config))),
        metrics: metrics.clone(),
    });
    let ingest_state = Arc::new(IngestState {
        store: store.clone(),
        registry: registry.clone(),
        wakeup: wakeup.clone(),
        metrics: metrics.clone(),
        stats: stats.clone(),
        settings: RwLock::new(Arc::new(IngestSettings::new(
            &config.ingest,
            config.storage.max_disk.0,
        ))),
        refusing: RwLock::new(None),
        shutting_down: Default::default(),
        admission: ingest::Admission::new(config.ingest.max_in_flight_bytes.0),
    });
    let ingest_addr = listeners
        .ingest
        .local_addr()
        .map_err(|e| Error::io("ingest socket", e))?;
    let admin_state = Arc::new(AdminState {
        store: store.clone(),
        delivery: delivery.clone(),
        ingest: ingest_state.clone(),
        wakeup: wakeup.clone(),
        stats: stats.clone(),
        started_at,
        listen: ingest_addr.to_string(),
        policy: RwLock::new(Arc::new(policy)),
        secret_overlap: RwLock::new(config.delivery.secret_overlap.0),
        allowed_uids: RwLock::new(allowed_uids(&config)),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let ingest_listener = tokio::net::TcpListener::from_std(listeners.ingest)
        .map_err(|e| Error::io("ingest socket", e))?;
    let admin_listener = tokio::net::UnixListener::from_std(listeners.admin)
        .map_err(|e| Error::io("admin socket", e))?;
    let ingest_task = tokio::spawn(serve_ingest(
        ingest_listener,
        ingest_state.clone(),
        config.ingest.max_connections as usize,
        stopped(&stop_rx),
    ));
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        stopped(&stop_rx),
    ));
    let scheduler_task = tokio::spawn(scheduler::run(
        delivery.clone(),
        wakeup.clone(),
        stats.clone(),
        config.delivery.shutdown_grace.0,
        stopped(&stop_rx),
    ));
    tokio::spawn(purge_expired(store.clone(), config.storage.retention.0));
    tokio::spawn(watch_disk_budget(store.clone(), ingest_state.clone()));

    tracing::info!(
        ingest = %ingest_addr,
        admin = %config.admin.socket.display(),
        store = %config.storage.path.display(),
        subscriptions = registry.snapshot().len(),
        pending = store.open_total(),
        "hookd ready"
    );
    notifier.send(&[
        "READY=1",
        "STATUS=serving",
        &format!("HOOKD_INGEST={ingest_addr}"),
    ]);
    let watchdog = notifier
        .watchdog()
        .map(|timeout| tokio::spawn(systemd::watchdog(notifier.clone(), store.clone(), timeout)));

    let live = Live {
        ingest: ingest_state.clone(),
        delivery: delivery.clone(),
        admin: admin_state,
        wakeup: wakeup.clone(),
        log,
    };
    let mut reloader = Reloader::new(config, live);
    tokio::pin!(shutdown);
    let failure = loop {
        tokio::select! {
            _ = &mut shutdown => break None,
            reason = store.flusher().failed() => break Some(reason),
            Some(new) = reloads.recv() => {
                reloader.apply(new);
            }
        }
    };
    notifier.send(&["STOPPING=1"]);
    tracing::info!("shutting down: refusing new events, draining attempts");
    ingest_state.shutting_down.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let _ = ingest_task.await;
    let _ = scheduler_task.await;
    let _ = admin_task.await;
    if let Some(reason) = failure {
        return Err(Error::Flush(reason));
    }
    let flush_store = store.clone();
    tokio::task::spawn_blocking(move || flush_store.flush_now())
        .await
        .map_err(|e| Error::Flush(e.to_string()))??;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("store flushed; bye");
    Ok(())
}

/// The delivery settings a config asks for (at start and on reload).
pub(crate) fn delivery_settings(config: &Config) -> DeliverySettings {
    DeliverySettings {
        timeout: config.delivery.timeout.0,
        retry: RetryPolicy {
            schedule: config.delivery.retry_schedule.iter().map(|d| d.0).collect(),
            max_retry_after: config.delivery.max_retry_after.0,
        },
        excerpt_limit: config.delivery.response_excerpt.0 as usize,
        max_in_flight: config.delivery.max_in_flight,
        max_in_flight_total: config.delivery.max_in_flight_total,
        require_https: config.delivery.require_https,
    }
}

/// `admin.allowed_uids` with the daemon's own uid added (empty stays empty: no restriction).
pub(crate) fn allowed_uids(config: &Config) -> Vec<u32> {
    let mut uids = config.admin.allowed_uids.clone();
    if !uids.is_empty() {
        uids.extend(admin::own_uid());
    }
    uids
}

pub(crate) fn control_settings(config: &Config) -> ControlSettings {
    let d = &config.delivery;
    ControlSettings {
        breaker_failures: d.breaker_failures,
        breaker_probe: d.breaker_probe.0,
        breaker_probe_max: d.breaker_probe_max.0,
        disable_after: d.disable_after.0,
        uplink: UplinkSettings {
            hosts: d.uplink_hosts,
            window: d.uplink_window.0,
            first_probe: d.uplink_probe.0,
            max_probe: d.breaker_probe_max.0,
            drain_rate: d.uplink_drain_rate,
            drain_for: d.uplink_drain_for.0,
        },
    }
}

/// Accepts ingest connections until `shutdown`, then lets open requests finish.
async fn serve_ingest(
    listener: tokio::net::TcpListener,
    state: Arc<IngestState>,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "ingest accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: closing at once keeps slow or idle clients from
            // starving the ones that send.
            tracing::debug!(
                max_connections,
                "ingest connection refused: at ingest.max_connections"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (header_timeout, idle_timeout) = {
            let settings = state.settings.read().unwrap();
            (settings.header_timeout, settings.idle_timeout)
        };
        let (stream, last_active) = crate::http::Tracked::new(stream);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(ingest::handle(state, req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(INGEST_READ_BUFFER)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = crate::http::idle(&last_active, idle_timeout) => {
                    tracing::debug!("ingest connection closed: idle past ingest.idle_timeout");
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
}

/// The most an ingest connection buffers of what it reads (hyper's default is
/// about 400 KiB, which a connection posting large batches keeps growing
/// towards: 64 such connections held 13 MiB of read buffers). A request head
/// must fit in it.
const INGEST_READ_BUFFER: usize = 64 * 1024;

/// Purges closed events older than `retention`, a bounded batch at a time.
async fn purge_expired(store: Arc<Store>, retention: Duration) {
    let pause = (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut resume_after = None;
    loop {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
        let batch_store = store.clone();
        let result =
            tokio::task::spawn_blocking(move || batch_store.purge_batch(cutoff, resume_after, 256))
                .await;
        match result {
            Ok(Ok(progress)) => {
                if progress.purged > 0 {
                    tracing::debug!(purged = progress.purged, "retention purge");
                }
                resume_after = progress.resume_after;
                if resume_after.is_some() {
                    // More to look at: a short breather keeps the lock free for others.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "retention purge failed"),
            Err(e) => tracing::error!(error = %e, "retention purge task failed"),
        }
        tokio::time::sleep(pause).await;
    }
}

/// Refuses ingest while the store is over its disk budget (and keeps the
/// store's new files owner-only).
async fn watch_disk_budget(store: Arc<Store>, ingest: Arc<IngestState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        store.keep_files_private();
        let max_disk = ingest.settings.read().unwrap().max_disk;
        // Not sled's file size alone: sled reuses freed space but rarely shrinks its file.
        let reason = store.over_budget(max_disk);
        let mut refusing = ingest.refusing.write().unwrap();
        if *refusing != reason {
            match &reason {
                Some(r) => tracing::warn!(reason = %r, "ingest paused"),
                None => tracing::info!("ingest resumed: the store is under its disk budget"),
            }
            *refusing = reason;
        }
    }
}
