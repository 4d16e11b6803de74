//! The scenarios: each starts what it needs, measures, and stops it again.

use crate::ceiling::CeilingServer;
use crate::daemon::{disk_usage, proc_cpu, system_busy, thread_cpu, Daemon, Workspace};
use crate::load::{self, quantile, Outcome, Plan};
use crate::receiver::{Receiver, Summary};
use crate::report::{mib, Scenario};
use crate::{now_ns, Res};
use hookd::api;
use hookd::cli::client::{item_path, AdminClient};
use hyper::Method;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Keep-alive connections of the load generator.
pub const CONNECTIONS: usize = 64;
/// Requests of a timed run, at most (a bound, not a target).
const MAX_TIMED_REQUESTS: u64 = 100_000_000;
/// Events per request when the backlog is filled.
const FILL_BATCH: usize = 1000;
/// A delivery wait ends early when nothing arrived for this long.
const STALL: Duration = Duration::from_secs(30);

/// Counts and durations; `--quick` shrinks them.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Length of each timed ingest run.
    pub window: Duration,
    pub e2e_events: u64,
    pub fanout10_events: u64,
    pub fanout100_events: u64,
    /// How long sending plus delivering may take in the delivery scenarios.
    pub delivery_deadline: Duration,
    pub backlog: u64,
    pub fill_deadline: Duration,
    /// The drain after resume is measured for at most this long.
    pub drain_window: Duration,
    pub idle_runs: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                window: Duration::from_secs(2),
                e2e_events: 5_000,
                fanout10_events: 1_000,
                fanout100_events: 200,
                delivery_deadline: Duration::from_secs(60),
                backlog: 100_000,
                fill_deadline: Duration::from_secs(120),
                drain_window: Duration::from_secs(10),
                idle_runs: 5,
            }
        } else {
            Sizes {
                window: Duration::from_secs(5),
                e2e_events: 50_000,
                fanout10_events: 10_000,
                fanout100_events: 2_000,
                delivery_deadline: Duration::from_secs(120),
                backlog: 1_000_000,
                fill_deadline: Duration::from_secs(300),
                drain_window: Duration::from_secs(30),
                idle_runs: 5,
            }
        }
    }
}

/// What every scenario shares.
pub struct Bench {
    /// Runs the load generator and admin calls.
    pub load_rt: tokio::runtime::Runtime,
    /// Runs the receiver, on its own threads.
    pub receiver_rt: tokio::runtime::Runtime,
    /// The release `hookd` binary.
    pub bin: PathBuf,
    pub sizes: Sizes,
}

/// CPU time of the server, of this process and of the whole machine since a mark.
struct CpuMark {
    pid: u32,
    server: Duration,
    threads: BTreeMap<String, Duration>,
    me: Duration,
    busy: Duration,
    at: Instant,
}

impl CpuMark {
    fn new(pid: u32) -> CpuMark {
        CpuMark {
            pid,
            server: proc_cpu(pid),
            threads: thread_cpu(pid),
            me: proc_cpu(std::process::id()),
            busy: system_busy(),
            at: Instant::now(),
        }
    }

    /// Adds CPU use since the mark, in % of one core: the server (`key`),
    /// this process (load generator and receiver), and everything else on
    /// the machine (other builds: noise). Notes the server's busiest threads.
    fn report(&self, s: &mut Scenario, key: &'static str) {
        let wall = self.at.elapsed().as_secs_f64();
        let server = proc_cpu(self.pid).saturating_sub(self.server);
        let me = proc_cpu(std::process::id()).saturating_sub(self.me);
        let others = system_busy()
            .saturating_sub(self.busy)
            .saturating_sub(server + me);
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / wall;
        s.add(key, pct(server), "% core");
        s.add("bench_cpu", pct(me), "% core");
        s.add("others_cpu", pct(others), "% core");
        let mut threads: Vec<(String, Duration)> = thread_cpu(self.pid)
            .into_iter()
            .map(|(name, t)| {
                let before = self.threads.get(&name).copied().unwrap_or_default();
                (name, t.saturating_sub(before))
            })
            .filter(|(_, t)| pct(*t) >= 1.0)
            .collect();
        threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        if !threads.is_empty() {
            let list: Vec<String> = threads
                .iter()
                .map(|(name, t)| format!("{name} {:.0}%", pct(*t)))
                .collect();
            s.note(format!("{key} by thread: {}", list.join(", ")));
        }
    }
}

/// The daemon's group-commit counters at a point in time.
struct FlushMark {
    rounds: f64,
    seconds: f64,
}

impl FlushMark {
    fn new(bench: &Bench, daemon: &Daemon) -> FlushMark {
        let m = bench
            .load_rt
            .block_on(load::scrape(daemon.ingest))
            .unwrap_or_default();
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        FlushMark {
            rounds: get("hookd_flush_duration_seconds_count"),
            seconds: get("hookd_flush_duration_seconds_sum"),
        }
    }

    /// Adds flush rounds per second, events per round and the mean round time since the mark.
    fn report(
        &self,
        bench: &Bench,
        daemon: &Daemon,
        s: &mut Scenario,
        events: u64,
        wall: Duration,
    ) {
        let now = FlushMark::new(bench, daemon);
        let rounds = now.rounds - self.rounds;
        if rounds <= 0.0 {
            return;
        }
        s.add("flushes_per_s", rounds / wall.as_secs_f64(), "/s");
        s.add("events_per_flush", events as f64 / rounds, "");
        s.add(
            "mean_flush_time",
            1000.0 * (now.seconds - self.seconds) / rounds,
            "ms",
        );
    }
}

/// What a delivery scenario sends.
pub struct Shape {
    pub subs: usize,
    pub events: u64,
    pub ordering_keys: u64,
    pub rate_limit: Option<&'static str>,
}

impl Bench {
    fn load(&self, plan: &Plan) -> Res<Outcome> {
        self.load_rt.block_on(load::run(plan))
    }

    fn timed_plan(&self, addr: std::net::SocketAddr, batch: Option<usize>) -> Plan {
        Plan {
            addr,
            path: if batch.is_some() {
                "/v1/events/batch"
            } else {
                "/v1/events"
            },
            connections: CONNECTIONS,
            batch,
            max_requests: MAX_TIMED_REQUESTS,
            max_time: self.sizes.window,
            track_events: false,
            ordering_keys: 0,
            anonymous: false,
        }
    }

    /// Creates a subscription to every event type; returns its id.
    fn subscribe(&self, ws: &Workspace, url: &str) -> Res<String> {
        self.subscribe_limited(ws, url, None)
    }

    /// Creates a subscription to every event type, with an optional rate limit.
    fn subscribe_limited(
        &self,
        ws: &Workspace,
        url: &str,
        rate_limit: Option<&str>,
    ) -> Res<String> {
        let client = AdminClient::new(ws.admin_socket());
        let body = serde_json::json!({ "url": url, "events": ["*"], "rate_limit": rate_limit });
        let sub: api::Subscription =
            self.load_rt
                .block_on(client.send_json(Method::POST, "/v1/subscriptions", &body))?;
        Ok(sub.id)
    }

    /// `pause` or `resume` a subscription.
    fn set_state(&self, ws: &Workspace, id: &str, action: &str) -> Res<()> {
        let client = AdminClient::new(ws.admin_socket());
        let path = item_path("/v1/subscriptions", id, &format!("/{action}"));
        let _: api::Subscription = self.load_rt.block_on(client.post_empty(&path))?;
        Ok(())
    }

    fn status(&self, ws: &Workspace) -> Res<api::Status> {
        let client = AdminClient::new(ws.admin_socket());
        Ok(self.load_rt.block_on(client.get_json("/v1/status"))?)
    }

    /// `ceiling`: the same load against a server that does nothing.
    pub fn ceiling(&self) -> Res<Scenario> {
        let mut s = Scenario::new("ceiling");
        let server = CeilingServer::start()?;
        let plan = self.timed_plan(server.addr, None);
        let cpu = CpuMark::new(server.pid());
        let out = self.load(&plan)?;
        s.add_rate("requests_per_s", out.requests_per_s(), "req/s");
        latencies(&mut s, &out);
        cpu.report(&mut s, "server_cpu");
        refusals(&mut s, &out);
        Ok(s)
    }

    /// `ingest-0`, `ingest-1`, `batch-100`: timed ingest with `subs` subscriptions.
    pub fn ingest(&self, name: &'static str, subs: usize, batch: Option<usize>) -> Res<Scenario> {
        self.timed_ingest(name, subs, batch, false)
    }

    /// `batch-100-anon`: as `ingest`, with events that carry no id.
    pub fn ingest_anonymous(
        &self,
        name: &'static str,
        subs: usize,
        batch: Option<usize>,
    ) -> Res<Scenario> {
        self.timed_ingest(name, subs, batch, true)
    }

    fn timed_ingest(
        &self,
        name: &'static str,
        subs: usize,
        batch: Option<usize>,
        anonymous: bool,
    ) -> Res<Scenario> {
        let mut s = Scenario::new(name);
        let ws = Workspace::new()?;
        let daemon = Daemon::start(&self.bin, &ws)?;
        let receiver = Receiver::start(self.receiver_rt.handle(), subs, 0)?;
        for k in 0..subs {
            self.subscribe(&ws, &receiver.url(k))?;
        }
        let plan = Plan {
            anonymous,
            ..self.timed_plan(daemon.ingest, batch)
        };
        let flush = FlushMark::new(self, &daemon);
        let cpu = CpuMark::new(daemon.pid);
        let out = self.load(&plan)?;
        s.add_rate("events_per_s", out.events_per_s(&plan), "ev/s");
        if batch.is_some() {
            s.add("requests_per_s", out.requests_per_s(), "req/s");
        }
        latencies(&mut s, &out);
        if subs > 0 {
            let delivered = receiver.tally.total.load(Ordering::Relaxed);
            s.add(
                "window_deliveries_per_s",
                delivered as f64 / out.elapsed.as_secs_f64(),
                "/s",
            );
        }
        let events = out.ok * plan.batch.unwrap_or(1) as u64;
        flush.report(self, &daemon, &mut s, events, out.elapsed);
        cpu.report(&mut s, "daemon_cpu");
        s.add("daemon_peak_rss", mib(daemon.peak_rss()), "MiB");
        refusals(&mut s, &out);
        finish(s, &ws, daemon)
    }

    /// `e2e-1`, `fanout-10`, `fanout-100`: `events` events to `subs`
    /// subscriptions, waiting for every delivery.
    pub fn deliveries(&self, name: &'static str, subs: usize, events: u64) -> Res<Scenario> {
        let shape = Shape {
            subs,
            events,
            ordering_keys: 0,
            rate_limit: None,
        };
        self.shaped(name, shape)
    }

    /// `ordered-1000`, `rate-limited-100`: like `deliveries`, with ordering
    /// keys on the events or a rate limit on every subscription.
    pub fn shaped(&self, name: &'static str, shape: Shape) -> Res<Scenario> {
        let Shape {
            subs,
            events,
            ordering_keys,
            rate_limit,
        } = shape;
        let mut s = Scenario::new(name);
        let ws = Workspace::new()?;
        let mut daemon = Daemon::start(&self.bin, &ws)?;
        let receiver = Receiver::start(self.receiver_rt.handle(), subs, events as usize)?;
        for k in 0..subs {
            self.subscribe_limited(&ws, &receiver.url(k), rate_limit)?;
        }
        let plan = Plan {
            max_requests: events,
            max_time: self.sizes.delivery_deadline,
            track_events: true,
            ordering_keys,
            ..self.timed_plan(daemon.ingest, None)
        };
        let cpu = CpuMark::new(daemon.pid);
        let deadline = Instant::now() + self.sizes.delivery_deadline;
        let out = self.load(&plan)?;
        let want = out.ok * subs as u64;
        wait_for(&mut daemon, &receiver, want, deadline);
        let sum = receiver.tally.summarize(&out.accepted_at);
        let delivered = sum.expected - sum.missing;
        s.add_rate("ingest_events_per_s", out.events_per_s(&plan), "ev/s");
        s.add(
            "deliveries_per_s",
            per_second(delivered, sum.last_ns, out.started_ns),
            "/s",
        );
        s.add("deliveries", delivered as f64, "");
        // How long deliveries went on after the last ingest answer: about
        // zero while delivery keeps pace with ingest; when it falls behind,
        // this is the queue the latencies above include.
        let ingest_end_ns = out.started_ns + out.elapsed.as_nanos() as u64;
        s.add(
            "delivery_tail",
            sum.last_ns.saturating_sub(ingest_end_ns) as f64 / 1e6,
            "ms",
        );
        delivery_latencies(&mut s, &sum);
        s.add("missing", sum.missing as f64, "");
        s.add("duplicates", sum.duplicates as f64, "");
        cpu.report(&mut s, "daemon_cpu");
        s.add("daemon_peak_rss", mib(daemon.peak_rss()), "MiB");
        if sum.unexpected > 0 {
            s.note(format!(
                "{} deliveries of events whose ingest request failed",
                sum.unexpected
            ));
        }
        if out.ok < events {
            s.ok = false;
            s.note(format!("only {} of {events} events accepted", out.ok));
        }
        if sum.missing > 0 {
            s.ok = false;
            s.note(format!(
                "{} deliveries missing after the {:?} deadline",
                sum.missing, self.sizes.delivery_deadline
            ));
        }
        refusals(&mut s, &out);
        finish(s, &ws, daemon)
    }

    /// `backlog`: fill a paused subscription, measure the store, restart, drain.
    pub fn backlog(&self) -> Res<Scenario> {
        let sizes = &self.sizes;
        let mut s = Scenario::new("backlog");
        let ws = Workspace::new()?;
        let daemon = Daemon::start(&self.bin, &ws)?;
        let receiver = Receiver::start(self.receiver_rt.handle(), 1, sizes.backlog as usize)?;
        let sub = self.subscribe(&ws, &receiver.url(0))?;
        self.set_state(&ws, &sub, "pause")?;

        let plan = Plan {
            max_requests: sizes.backlog / FILL_BATCH as u64,
            max_time: sizes.fill_deadline,
            track_events: true,
            ..self.timed_plan(daemon.ingest, Some(FILL_BATCH))
        };
        eprintln!(
            "  filling {} pending deliveries in batches of {FILL_BATCH} ...",
            sizes.backlog
        );
        let cpu = CpuMark::new(daemon.pid);
        let out = self.load(&plan)?;
        s.add_rate("fill_events_per_s", out.events_per_s(&plan), "ev/s");
        cpu.report(&mut s, "fill_daemon_cpu");
        s.add("fill_peak_rss", mib(daemon.peak_rss()), "MiB");
        let pending = self.status(&ws)?.deliveries.pending;
        s.add("pending", pending as f64, "");
        if pending < sizes.backlog {
            s.note(format!(
                "the fill reached {pending} of {} pending deliveries",
                sizes.backlog
            ));
        }
        refusals(&mut s, &out);
        if receiver.tally.total.load(Ordering::Relaxed) > 0 {
            s.ok = false;
            s.note("deliveries arrived while the subscription was paused");
        }

        let stop_time = daemon.stop()?;
        let (allocated, apparent) = disk_usage(&ws.store_dir());
        s.add("store_disk", mib(allocated), "MiB");
        s.add(
            "disk_per_pending",
            allocated as f64 / pending.max(1) as f64,
            "B",
        );
        s.add(
            "apparent_per_pending",
            apparent as f64 / pending.max(1) as f64,
            "B",
        );
        s.add("stop_time", ms(stop_time), "ms");
        let mut daemon = Daemon::start(&self.bin, &ws)?;
        s.add("restart_to_ready", ms(daemon.start_time), "ms");
        s.add("sigterm_to_ready", ms(stop_time + daemon.start_time), "ms");
        s.add(
            "rss_after_restart",
            mib(daemon.status_bytes("VmRSS")),
            "MiB",
        );
        let restarted_pending = self.status(&ws)?.deliveries.pending;
        if restarted_pending != pending {
            s.ok = false;
            s.note(format!(
                "{pending} pending before the restart, {restarted_pending} after"
            ));
        }

        eprintln!("  resumed; draining for up to {:?} ...", sizes.drain_window);
        let cpu = CpuMark::new(daemon.pid);
        let resumed_ns = now_ns();
        self.set_state(&ws, &sub, "resume")?;
        wait_for(
            &mut daemon,
            &receiver,
            pending,
            Instant::now() + sizes.drain_window,
        );
        let sum = receiver.tally.summarize(&out.accepted_at);
        let drained = sum.expected - sum.missing;
        s.add(
            "drain_per_s",
            per_second(drained, sum.last_ns, resumed_ns),
            "/s",
        );
        s.add("drained", drained as f64, "");
        s.add("drain_duplicates", sum.duplicates as f64, "");
        cpu.report(&mut s, "drain_daemon_cpu");
        s.add("drain_peak_rss", mib(daemon.peak_rss()), "MiB");
        if drained < pending {
            s.note(format!(
                "drain measured over the first {drained} of {pending} deliveries ({:?} window)",
                sizes.drain_window
            ));
        }
        finish(s, &ws, daemon)
    }

    /// `idle`: start-up time and idle memory, median of several starts.
    pub fn idle(&self) -> Res<Scenario> {
        let mut s = Scenario::new("idle");
        let (mut starts, mut rss, mut peak) = (Vec::new(), Vec::new(), 0);
        for _ in 0..self.sizes.idle_runs {
            let ws = Workspace::new()?;
            let daemon = Daemon::start(&self.bin, &ws)?;
            std::thread::sleep(Duration::from_millis(500));
            starts.push(ms(daemon.start_time));
            rss.push(mib(daemon.status_bytes("VmRSS")));
            peak = peak.max(daemon.peak_rss());
            daemon.stop()?;
        }
        s.add("startup_time", median(&mut starts), "ms");
        s.add("idle_rss", median(&mut rss), "MiB");
        s.add("daemon_peak_rss", mib(peak), "MiB");
        s.add(
            "binary_size",
            mib(std::fs::metadata(&self.bin)?.len()),
            "MiB",
        );
        s.note(format!(
            "median of {} starts, each in a fresh directory",
            self.sizes.idle_runs
        ));
        Ok(s)
    }
}

/// Stops the daemon. A scenario that failed a check gets the daemon's
/// warnings and errors as notes; one whose daemon did not stop cleanly fails.
fn finish(mut s: Scenario, ws: &Workspace, daemon: Daemon) -> Res<Scenario> {
    let problems = if s.ok { Vec::new() } else { ws.log_problems(5) };
    for line in problems {
        s.note(format!("hookd log: {line}"));
    }
    if let Err(e) = daemon.stop() {
        s.ok = false;
        s.note(format!("stopping hookd: {e}; log tail:\n{}", ws.log_tail()));
    }
    Ok(s)
}

/// Waits until `want` distinct deliveries arrived, the deadline passed,
/// nothing came for [`STALL`], or the daemon exited.
fn wait_for(daemon: &mut Daemon, receiver: &Receiver, want: u64, deadline: Instant) {
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let now = receiver.tally.unique.load(Ordering::Relaxed);
        if now >= want || Instant::now() >= deadline || daemon.exited().is_some() {
            return;
        }
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= STALL {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn per_second(count: u64, end_ns: u64, start_ns: u64) -> f64 {
    if count == 0 || end_ns <= start_ns {
        return 0.0;
    }
    count as f64 / ((end_ns - start_ns) as f64 / 1e9)
}

fn latencies(s: &mut Scenario, out: &Outcome) {
    s.add(
        "p50_latency",
        quantile(&out.latencies_us, 0.50) / 1000.0,
        "ms",
    );
    s.add(
        "p99_latency",
        quantile(&out.latencies_us, 0.99) / 1000.0,
        "ms",
    );
}

fn delivery_latencies(s: &mut Scenario, sum: &Summary) {
    s.add(
        "p50_delivery_latency",
        quantile(&sum.latencies_us, 0.50) / 1000.0,
        "ms",
    );
    s.add(
        "p99_delivery_latency",
        quantile(&sum.latencies_us, 0.99) / 1000.0,
        "ms",
    );
    s.add(
        "max_delivery_latency",
        quantile(&sum.latencies_us, 1.0) / 1000.0,
        "ms",
    );
}

fn refusals(s: &mut Scenario, out: &Outcome) {
    if let Some(r) = out.refusals() {
        s.note(format!("non-2xx answers: {r}"));
    }
    if let Some(first) = &out.first_refusal {
        s.note(format!("first refusal: {first}"));
    }
    if out.errors > 0 {
        s.note(format!("{} connection errors (reconnected)", out.errors));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
