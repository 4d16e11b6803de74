//! hookd-bench: throughput, latency and footprint of a real `hookd serve`.
//!
//! `cargo bench --bench hookd-bench -- [--json] [--quick] [--only NAME,...]`
//!
//! Every scenario starts the release `hookd` binary in a fresh temporary
//! directory, on loopback only, drives it with a keep-alive HTTP/1.1 load
//! generator and a local webhook receiver, and stops it again. Every load is
//! bounded in requests and in time. See `benches/README.md`.

mod ceiling;
mod daemon;
mod load;
mod receiver;
mod report;
mod scenarios;

use scenarios::{Bench, Shape, Sizes};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Instant;

/// The error type of the harness: any error, reported as text.
pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Nanoseconds since the harness started; one clock for sender and receiver.
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Every scenario, in the order they run.
const SCENARIOS: [&str; 12] = [
    "ceiling",
    "ingest-0",
    "ingest-1",
    "batch-100",
    "batch-100-anon",
    "e2e-1",
    "fanout-10",
    "fanout-100",
    "ordered-1000",
    "rate-limited-100",
    "backlog",
    "idle",
];

const USAGE: &str = "usage: cargo bench --bench hookd-bench -- [--json] [--quick] [--only NAME,...]

  --json    print the results as one JSON document on stdout (progress goes to stderr)
  --quick   smaller counts and shorter runs
  --only    run only these scenarios (comma-separated):
            ceiling ingest-0 ingest-1 batch-100 batch-100-anon e2e-1 fanout-10 fanout-100
            ordered-1000 rate-limited-100 backlog idle";

struct Options {
    json: bool,
    quick: bool,
    only: Option<Vec<String>>,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            json: false,
            quick: false,
            only: None,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // cargo bench passes --bench to harness-less targets.
                "--bench" => {}
                "--json" => options.json = true,
                "--quick" => options.quick = true,
                "--only" => {
                    let list = args.next().ok_or("--only needs a list of scenarios")?;
                    let names: Vec<String> = list.split(',').map(|s| s.trim().to_owned()).collect();
                    if let Some(bad) = names.iter().find(|n| !SCENARIOS.contains(&n.as_str())) {
                        return Err(format!("unknown scenario {bad:?}"));
                    }
                    options.only = Some(names);
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }

    fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
    }
}

fn main() -> ExitCode {
    if std::env::var_os(ceiling::SERVER_ENV).is_some() {
        return ceiling::serve_main();
    }
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios and prints the results; false if one failed a check.
fn run(options: &Options) -> Res<bool> {
    now_ns();
    // HOOKD_BENCH_BIN runs another build (say, one with symbols for perf).
    let bin = std::env::var_os("HOOKD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hookd")));
    if !bin.exists() {
        return Err(format!(
            "{} is missing; build it with `cargo build --release`",
            bin.display()
        )
        .into());
    }
    let bench = Bench {
        load_rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("load")
            .enable_all()
            .build()?,
        receiver_rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("receiver")
            .enable_all()
            .build()?,
        bin,
        sizes: Sizes::new(options.quick),
    };
    let machine = machine(&bench);
    if !options.json {
        for (k, v) in &machine {
            eprintln!("{k:<10} {v}");
        }
    }
    let sizes = bench.sizes.clone();
    let mut results = Vec::new();
    let mut all_ok = true;
    for name in SCENARIOS.iter().copied().filter(|n| options.wants(n)) {
        eprintln!("running {name} ...");
        let started = Instant::now();
        let result = match name {
            "ceiling" => bench.ceiling(),
            "ingest-0" => bench.ingest(name, 0, None),
            "ingest-1" => bench.ingest(name, 1, None),
            "batch-100" => bench.ingest(name, 1, Some(100)),
            "batch-100-anon" => bench.ingest_anonymous(name, 1, Some(100)),
            "e2e-1" => bench.deliveries(name, 1, sizes.e2e_events),
            "fanout-10" => bench.deliveries(name, 10, sizes.fanout10_events),
            "fanout-100" => bench.deliveries(name, 100, sizes.fanout100_events),
            "ordered-1000" => bench.shaped(
                name,
                Shape {
                    subs: 1,
                    events: sizes.e2e_events,
                    ordering_keys: 1000,
                    rate_limit: None,
                },
            ),
            "rate-limited-100" => bench.shaped(
                name,
                Shape {
                    subs: 100,
                    events: sizes.fanout100_events,
                    ordering_keys: 0,
                    rate_limit: Some("50/s"),
                },
            ),
            "backlog" => bench.backlog(),
            "idle" => bench.idle(),
            _ => unreachable!("names are checked when parsed"),
        };
        match result {
            Ok(mut s) => {
                s.add("scenario_time", started.elapsed().as_secs_f64(), "s");
                all_ok &= s.ok;
                results.push(s);
            }
            Err(e) => {
                eprintln!("  {name} failed: {e}");
                let mut s = report::Scenario::new(name);
                s.ok = false;
                s.note(format!("error: {e}"));
                all_ok = false;
                results.push(s);
            }
        }
    }
    if options.json {
        let doc = report::json(&machine, options.quick, &results);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", report::table(&machine, &results));
    }
    Ok(all_ok)
}

/// The machine and the run's parameters, shown at the top.
fn machine(bench: &Bench) -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_string());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let loadavg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let mut sample = String::new();
    load::write_event(&mut sample, 0, 0, false);
    vec![
        ("nproc".into(), nproc.to_string()),
        ("cpu".into(), model),
        ("memory".into(), mem),
        ("kernel".into(), kernel.trim().to_string()),
        (
            "loadavg".into(),
            format!("{} (at start)", loadavg.join(" ")),
        ),
        (
            "hookd".into(),
            format!("{} (commit {commit})", bench.bin.display()),
        ),
        (
            "load".into(),
            format!(
                "{} keep-alive HTTP/1.1 connections, {}-byte events, {} s windows",
                scenarios::CONNECTIONS,
                sample.len(),
                bench.sizes.window.as_secs()
            ),
        ),
    ]
}
