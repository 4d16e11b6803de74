//! Results: one table for people, or one JSON document.

use serde_json::{json, Map, Value};

/// One figure of a scenario.
#[derive(Debug, Clone)]
pub struct Metric {
    pub key: &'static str,
    pub value: f64,
    pub unit: &'static str,
    /// An ingest rate, also shown as a share of the ceiling's req/s.
    pub vs_ceiling: bool,
}

/// The figures of one scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
    /// False when the scenario found a correctness problem (missing deliveries).
    pub ok: bool,
}

impl Scenario {
    pub fn new(name: &'static str) -> Scenario {
        Scenario {
            name,
            metrics: Vec::new(),
            notes: Vec::new(),
            ok: true,
        }
    }

    pub fn add(&mut self, key: &'static str, value: f64, unit: &'static str) {
        self.metrics.push(Metric {
            key,
            value,
            unit,
            vs_ceiling: false,
        });
    }

    /// An ingest rate: shown with its share of the ceiling.
    pub fn add_rate(&mut self, key: &'static str, value: f64, unit: &'static str) {
        self.metrics.push(Metric {
            key,
            value,
            unit,
            vs_ceiling: true,
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

/// The ceiling's requests per second, if it ran.
pub fn ceiling_rate(scenarios: &[Scenario]) -> Option<f64> {
    scenarios
        .iter()
        .find(|s| s.name == "ceiling")
        .and_then(|s| s.get("requests_per_s"))
        .filter(|v| *v > 0.0)
}

/// Thousands separators for big numbers, a few decimals for small ones.
pub fn human(value: f64) -> String {
    if value.abs() >= 1000.0 {
        let digits = format!("{:.0}", value.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if value < 0.0 {
            out.insert(0, '-');
        }
        out
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Bytes as MiB with two decimals.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The table for people.
pub fn table(machine: &[(String, String)], scenarios: &[Scenario]) -> String {
    let mut out = String::new();
    for (k, v) in machine {
        out.push_str(&format!("{k:<10} {v}\n"));
    }
    out.push('\n');
    let ceiling = ceiling_rate(scenarios);
    out.push_str(&format!(
        "{:<11} {:<26} {:>14} {:<8} {:>10}\n",
        "scenario", "metric", "value", "unit", "of ceiling"
    ));
    out.push_str(&format!("{}\n", "-".repeat(73)));
    for s in scenarios {
        for (i, m) in s.metrics.iter().enumerate() {
            let name = if i == 0 { s.name } else { "" };
            let share = match (m.vs_ceiling, ceiling) {
                (true, Some(c)) => format!("{:.1}%", 100.0 * m.value / c),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{name:<11} {:<26} {:>14} {:<8} {share:>10}\n",
                m.key,
                human(m.value),
                m.unit
            ));
        }
        if !s.ok {
            out.push_str(&format!("{:<11} FAILED: see notes\n", ""));
        }
        for n in &s.notes {
            out.push_str(&format!("{:<11} note: {n}\n", ""));
        }
        out.push('\n');
    }
    out
}

/// The JSON document.
pub fn json(machine: &[(String, String)], quick: bool, scenarios: &[Scenario]) -> Value {
    let ceiling = ceiling_rate(scenarios);
    let machine: Map<String, Value> = machine
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let scenarios: Vec<Value> = scenarios
        .iter()
        .map(|s| {
            let metrics: Map<String, Value> = s
                .metrics
                .iter()
                .map(|m| (m.key.to_string(), json!(m.value)))
                .collect();
            let units: Map<String, Value> = s
                .metrics
                .iter()
                .map(|m| (m.key.to_string(), json!(m.unit)))
                .collect();
            let shares: Map<String, Value> = s
                .metrics
                .iter()
                .filter(|m| m.vs_ceiling)
                .filter_map(|m| Some((m.key.to_string(), json!(m.value / ceiling?))))
                .collect();
            json!({
                "name": s.name,
                "ok": s.ok,
                "metrics": metrics,
                "units": units,
                "share_of_ceiling": shares,
                "notes": s.notes,
            })
        })
        .collect();
    json!({ "machine": machine, "quick": quick, "scenarios": scenarios })
}
