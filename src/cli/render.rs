//! Human output of each command, from the API's typed answers.

use crate::api::{Attempt, Backup, Delivery, Event, List, Requeued, Status, Subscription};

use super::output::{
    bytes, duration_secs, http_status, kv_block, latency, one_line, or_dash, reindent_json,
    relative, relative_opt, sanitize, time_and_relative, Col, Table,
};

/// How a subscription's secret is shown in its detail block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretLine {
    /// Not at all (it is printed separately, after the block).
    Omit,
    /// The secret when the API sent it, else a hint about `--show-secret`.
    IfPresent,
}

pub(crate) fn status(s: &Status, now: i64) -> String {
    let ingest = if s.ingest.accepting {
        format!("accepting on {}", s.ingest.listen)
    } else {
        format!(
            "NOT ACCEPTING on {}: {}",
            s.ingest.listen,
            s.ingest.reason.as_deref().unwrap_or("no reason given")
        )
    };
    let store = if s.store.max_disk_bytes > 0 {
        let pct = s.store.size_bytes as f64 * 100.0 / s.store.max_disk_bytes as f64;
        format!(
            "{}: {} of {} ({pct:.1}%)",
            s.store.path,
            bytes(s.store.size_bytes),
            bytes(s.store.max_disk_bytes)
        )
    } else {
        format!("{}: {}", s.store.path, bytes(s.store.size_bytes))
    };
    let subs = &s.subscriptions;
    let d = &s.deliveries;
    kv_block(&[
        ("version", s.version.clone()),
        ("started", time_and_relative(&s.started_at, now)),
        ("uptime", duration_secs(s.uptime_secs)),
        ("ingest", ingest),
        ("events accepted", s.ingest.events_accepted.to_string()),
        ("store", store),
        (
            "subscriptions",
            format!(
                "{} active, {} paused, {} disabled",
                subs.active, subs.paused, subs.disabled
            ),
        ),
        (
            "deliveries",
            format!(
                "{} pending, {} in flight; since start: {} delivered, {} dead",
                d.pending, d.in_flight, d.delivered, d.dead
            ),
        ),
        ("uplink", uplink(s, now)),
        ("breakers open", breakers(s, now)),
    ])
}

fn uplink(s: &Status, now: i64) -> String {
    let c = &s.delivery_control;
    match &c.uplink_down_since {
        Some(since) => format!(
            "DOWN since {} (holding deliveries, probing)",
            time_and_relative(since, now)
        ),
        None => "up".to_string(),
    }
}

fn breakers(s: &Status, now: i64) -> String {
    let open = &s.delivery_control.breakers_open;
    if open.is_empty() {
        return "none".to_string();
    }
    open.iter()
        .map(|b| {
            format!(
                "{} since {}",
                b.subscription_id,
                time_and_relative(&b.since, now)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

fn lines_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join("\n")
    }
}

/// `16`, or `4 of 16 (lowered to 4 after ...)` when AIMD holds it down.
fn concurrency(s: &Subscription) -> String {
    let effective = s.effective_max_in_flight;
    if effective == 0 || effective >= s.max_in_flight {
        return s.max_in_flight.to_string();
    }
    match &s.concurrency_reason {
        Some(why) => format!("{effective} of {} ({why})", s.max_in_flight),
        None => format!("{effective} of {}", s.max_in_flight),
    }
}

/// `closed`, or `open since ... (N consecutive failures)`.
fn breaker(s: &Subscription, now: i64) -> String {
    let state = if s.breaker.is_empty() {
        "closed"
    } else {
        s.breaker.as_str()
    };
    let mut out = state.to_string();
    if let Some(since) = &s.breaker_since {
        out.push_str(&format!(" since {}", time_and_relative(since, now)));
    }
    if s.consecutive_failures > 0 {
        out.push_str(&format!(
            " ({} consecutive failures)",
            s.consecutive_failures
        ));
    }
    if let Some(since) = &s.failing_since {
        out.push_str(&format!(
            "; failing since {}",
            time_and_relative(since, now)
        ));
    }
    out
}

pub(crate) fn sub_block(s: &Subscription, now: i64, secret: SecretLine) -> String {
    let state = match &s.disabled_reason {
        Some(r) if !r.is_empty() => format!("{} ({r})", s.state),
        _ => s.state.clone(),
    };
    let mut pairs = vec![
        ("id", s.id.clone()),
        ("url", s.url.clone()),
        ("state", state),
        ("events", list_or_dash(&s.events)),
        ("tenant", or_dash(s.tenant.as_deref())),
        ("headers", lines_or_dash(&s.headers)),
        ("filters", lines_or_dash(&s.filters)),
        ("rate limit", or_dash(s.rate_limit.as_deref())),
        ("max in flight", concurrency(s)),
        ("breaker", breaker(s, now)),
        ("created", time_and_relative(&s.created_at, now)),
        (
            "pending",
            format!("{} ({} in flight)", s.pending, s.in_flight),
        ),
    ];
    if s.signing.contains("v1a") {
        pairs.push(("signing", s.signing.clone()));
        pairs.push(("public key", lines_or_dash(&s.public_keys)));
    }
    if secret == SecretLine::IfPresent && s.signing != "v1a" {
        let shown = match &s.secret {
            Some(sec) => sec.clone(),
            None => "(hidden; use --show-secret)".to_string(),
        };
        pairs.push(("secret", shown));
    }
    if !s.previous_secrets_until.is_empty() {
        let until: Vec<String> = s
            .previous_secrets_until
            .iter()
            .map(|t| time_and_relative(t, now))
            .collect();
        pairs.push(("old secrets until", until.join("\n")));
    }
    kv_block(&pairs)
}

fn secret_notice(s: &Subscription) -> String {
    if s.signing == "v1a" {
        return format!(
            "\nDeliveries carry v1a (Ed25519) signatures; receivers verify them with the public key:\n  {}\n",
            s.public_keys.first().map(String::as_str).unwrap_or("-")
        );
    }
    match &s.secret {
        Some(sec) => format!(
            "\nSigning secret:\n  {}\nSave it now: it will not be shown again \
             (except by `hookd sub get {} --show-secret`).\n",
            sanitize(sec, false),
            s.id
        ),
        None => "\nThe daemon did not return the signing secret.\n".to_string(),
    }
}

pub(crate) fn sub_created(s: &Subscription, now: i64) -> String {
    format!(
        "Created subscription {}.\n\n{}{}",
        s.id,
        sub_block(s, now, SecretLine::Omit),
        secret_notice(s)
    )
}

pub(crate) fn sub_rotated(s: &Subscription, now: i64) -> String {
    let mut out = format!("Rotated the signing secret of subscription {}.\n", s.id);
    if !s.previous_secrets_until.is_empty() {
        out.push_str("Older secrets keep signing until:\n");
        for t in &s.previous_secrets_until {
            out.push_str(&format!("  {}\n", time_and_relative(t, now)));
        }
    }
    out.push_str(&secret_notice(s));
    out
}

pub(crate) fn sub_updated(s: &Subscription, now: i64) -> String {
    format!(
        "Updated subscription {}.\n\n{}",
        s.id,
        sub_block(s, now, SecretLine::IfPresent)
    )
}

pub(crate) fn sub_state(s: &Subscription) -> String {
    match &s.disabled_reason {
        Some(r) if !r.is_empty() => format!("Subscription {} is now {} ({r}).\n", s.id, s.state),
        _ => format!("Subscription {} is now {}.\n", s.id, s.state),
    }
}

pub(crate) fn sub_list(list: &List<Subscription>) -> String {
    let mut t = Table::new(vec![
        Col::new("ID"),
        Col::new("URL").max(48),
        Col::new("EVENTS").max(32),
        Col::new("TENANT").max(20),
        Col::new("STATE"),
        Col::new("PENDING").right(),
    ]);
    for s in &list.items {
        t.row(vec![
            s.id.clone(),
            s.url.clone(),
            list_or_dash(&s.events),
            or_dash(s.tenant.as_deref()),
            s.state.clone(),
            s.pending.to_string(),
        ]);
    }
    if t.is_empty() {
        "No subscriptions.\n".to_string()
    } else {
        t.render()
    }
}

/// `2 pending, 1 delivered`: deliveries counted by status, in lifecycle order.
fn delivery_summary(deliveries: &[Delivery]) -> String {
    const ORDER: [&str; 5] = ["pending", "failed", "delivered", "dead", "cancelled"];
    let mut counts: Vec<(String, usize)> = Vec::new();
    for d in deliveries {
        match counts.iter_mut().find(|(s, _)| *s == d.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((d.status.clone(), 1)),
        }
    }
    counts.sort_by_key(|(s, _)| {
        (
            ORDER.iter().position(|o| o == s).unwrap_or(ORDER.len()),
            s.clone(),
        )
    });
    if counts.is_empty() {
        return "none".to_string();
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The earliest next attempt among deliveries (RFC 3339 strings in UTC sort as times).
fn earliest_next(deliveries: &[Delivery]) -> Option<&str> {
    deliveries.iter().filter_map(|d| d.next_at.as_deref()).min()
}

pub(crate) fn event_list(list: &List<Event>, now: i64) -> String {
    let mut t = Table::new(vec![
        Col::new("ID"),
        Col::new("TYPE").max(32),
        Col::new("TENANT").max(20).optional(),
        Col::new("KEY").max(20).optional(),
        Col::new("DELIVERIES").max(40),
        Col::new("NEXT"),
        Col::new("RECEIVED"),
    ]);
    for e in &list.items {
        t.row(vec![
            e.id.clone(),
            e.event_type.clone(),
            or_dash(e.tenant.as_deref()),
            or_dash(e.ordering_key.as_deref()),
            delivery_summary(&e.deliveries),
            relative_opt(earliest_next(&e.deliveries), now),
            relative(&e.received_at, now),
        ]);
    }
    if t.is_empty() {
        "No events.\n".to_string()
    } else {
        t.render()
    }
}

/// The LAST column: error text, else the status code.
fn last_outcome(status: Option<u16>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(code), Some(e)) if !e.is_empty() => format!("{}: {e}", http_status(code)),
        (_, Some(e)) if !e.is_empty() => e.to_string(),
        (Some(code), _) => http_status(code),
        _ => "-".to_string(),
    }
}

fn delivery_table(deliveries: &[Delivery], now: i64, with_event: bool) -> String {
    let mut cols = vec![Col::new("ID")];
    if with_event {
        cols.push(Col::new("TYPE").max(32));
    }
    cols.extend([
        Col::new("SUB"),
        Col::new("STATUS"),
        Col::new("ATTEMPTS").right(),
        Col::new("LAST").max(40),
        Col::new("NEXT"),
        Col::new("CREATED"),
        Col::new("KEY").max(20).optional(),
    ]);
    let mut t = Table::new(cols);
    for d in deliveries {
        let mut row = vec![d.id.clone()];
        if with_event {
            row.push(d.event_type.clone());
        }
        row.extend([
            d.subscription_id.clone(),
            d.status.clone(),
            d.attempts.to_string(),
            last_outcome(d.last_status, d.last_error.as_deref()),
            relative_opt(d.next_at.as_deref(), now),
            relative(&d.created_at, now),
            or_dash(d.ordering_key.as_deref()),
        ]);
        t.row(row);
    }
    t.render()
}

pub(crate) fn delivery_list(list: &List<Delivery>, now: i64) -> String {
    if list.items.is_empty() {
        "No deliveries.\n".to_string()
    } else {
        delivery_table(&list.items, now, true)
    }
}

pub(crate) fn event(e: &Event, now: i64) -> String {
    let mut out = kv_block(&[
        ("id", e.id.clone()),
        ("type", e.event_type.clone()),
        ("tenant", or_dash(e.tenant.as_deref())),
        ("ordering key", or_dash(e.ordering_key.as_deref())),
        ("received", time_and_relative(&e.received_at, now)),
    ]);
    out.push('\n');
    if e.deliveries.is_empty() {
        out.push_str("No deliveries (no subscription matched).\n");
    } else {
        out.push_str("Deliveries:\n");
        out.push_str(&delivery_table(&e.deliveries, now, false));
    }
    if let Some(data) = &e.data {
        out.push_str("\nData:\n");
        out.push_str(&sanitize(&reindent_json(data.get()), true));
        out.push('\n');
    }
    out
}

fn attempt_outcome(a: &Attempt) -> String {
    last_outcome(a.status, a.error.as_deref())
}

pub(crate) fn delivery(d: &Delivery, now: i64) -> String {
    let mut out = kv_block(&[
        ("id", d.id.clone()),
        ("event", format!("{} ({})", d.event_id, d.event_type)),
        ("subscription", d.subscription_id.clone()),
        ("status", d.status.clone()),
        ("attempts", d.attempts.to_string()),
        ("last", last_outcome(d.last_status, d.last_error.as_deref())),
        (
            "next attempt",
            d.next_at
                .as_deref()
                .map_or_else(|| "-".to_string(), |t| time_and_relative(t, now)),
        ),
        ("ordering key", or_dash(d.ordering_key.as_deref())),
        ("created", time_and_relative(&d.created_at, now)),
        ("updated", time_and_relative(&d.updated_at, now)),
    ]);
    let attempts = d.attempt_log.as_deref().unwrap_or_default();
    out.push('\n');
    if attempts.is_empty() {
        out.push_str("No attempts yet.\n");
        return out;
    }
    let mut t = Table::new(vec![
        Col::new("NO").right(),
        Col::new("AT"),
        Col::new("STATUS/ERROR").max(60),
        Col::new("LATENCY").right(),
    ]);
    for a in attempts {
        t.row(vec![
            a.no.to_string(),
            relative(&a.at, now),
            attempt_outcome(a),
            latency(a.latency_ms),
        ]);
    }
    out.push_str(&t.render());
    if let Some(last) = attempts.last() {
        if last.response.is_empty() {
            out.push_str(&format!("\nResponse of attempt {}: (empty)\n", last.no));
        } else {
            out.push_str(&format!(
                "\nResponse of attempt {} (first bytes):\n",
                last.no
            ));
            for line in sanitize(&last.response, true).lines() {
                let l = format!("  {line}");
                out.push_str(l.trim_end());
                out.push('\n');
            }
        }
    }
    out
}

pub(crate) fn requeued(r: &Requeued, what: &str) -> String {
    const SHOWN: usize = 50;
    match r.deliveries.len() {
        0 => format!("Nothing to {what}: no matching deliveries.\n"),
        n => {
            let mut out = format!("Queued {n} deliver{}:\n", if n == 1 { "y" } else { "ies" });
            for id in r.deliveries.iter().take(SHOWN) {
                out.push_str(&format!("  {}\n", one_line(id, 100)));
            }
            if n > SHOWN {
                out.push_str(&format!("  … and {} more (see --json)\n", n - SHOWN));
            }
            out
        }
    }
}

/// `hookd backup`: what the backup holds and how to restore it.
pub(crate) fn backup(b: &Backup) -> String {
    format!(
        "Backup written to {path} in {took}: {events} events, {deliveries} deliveries \
         ({open} open), {subs} subscriptions, {size}.\n\
         To restore: stop hookd, move {path} to storage.path, start hookd.\n",
        path = sanitize(&b.path, false),
        took = latency(b.took_ms),
        events = b.events,
        deliveries = b.deliveries,
        open = b.open_deliveries,
        subs = b.subscriptions,
        size = bytes(b.size_bytes),
    )
}
