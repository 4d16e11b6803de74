//! The retry policy as pure functions: what an attempt's outcome means and when to try again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What hookd does after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: done.
    Delivered,
    /// Failed; try again after this long.
    RetryAfter(Duration),
    /// Failed and the schedule is used up.
    Dead,
    /// 410 Gone: the subscriber asked to be disabled.
    Gone,
}

/// The schedule and caps the verdict is computed from.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, ... failed attempt.
    pub schedule: Vec<Duration>,
    /// The longest wait a `Retry-After` header can impose.
    pub max_retry_after: Duration,
}

/// One attempt's outcome, as far as the policy cares.
#[derive(Debug, Clone, Copy)]
pub struct AttemptFacts<'a> {
    /// The HTTP status, when response headers arrived.
    pub status: Option<u16>,
    /// The raw `Retry-After` header value.
    pub retry_after: Option<&'a str>,
    /// How many attempts this delivery has had, this one included.
    pub attempts: u32,
    /// A number in [-1, 1] that picks the jitter.
    pub jitter: f64,
    pub now: SystemTime,
}

impl RetryPolicy {
    /// Decides what follows an attempt.
    pub fn verdict(&self, facts: AttemptFacts<'_>) -> Verdict {
        match facts.status {
            Some(s) if (200..300).contains(&s) => return Verdict::Delivered,
            Some(410) => return Verdict::Gone,
            _ => {}
        }
        let Some(base) = scheduled_delay(&self.schedule, facts.attempts) else {
            return Verdict::Dead;
        };
        let mut delay = jittered(base, facts.jitter);
        if matches!(facts.status, Some(429 | 503)) {
            if let Some(wait) = facts
                .retry_after
                .and_then(|v| parse_retry_after(v, facts.now))
            {
                delay = delay.max(wait.min(self.max_retry_after));
            }
        }
        Verdict::RetryAfter(delay)
    }
}

impl RetryPolicy {
    /// How long a delivery waits after a failed probe that spent nothing of
    /// its schedule (breaker open, uplink down): its current step, never dead.
    pub fn hold_delay(&self, spent: u32, jitter: f64) -> Duration {
        let step = (spent.max(1) as usize - 1).min(self.schedule.len().saturating_sub(1));
        let base = self
            .schedule
            .get(step)
            .copied()
            .unwrap_or(Duration::from_secs(5));
        jittered(base, jitter)
    }
}

/// The schedule's delay after `attempts` failed attempts, or `None` when it is used up.
pub fn scheduled_delay(schedule: &[Duration], attempts: u32) -> Option<Duration> {
    let index = attempts.checked_sub(1)? as usize;
    schedule.get(index).copied()
}

/// `base` moved by up to ±10%: `jitter` in [-1, 1] picks where.
pub fn jittered(base: Duration, jitter: f64) -> Duration {
    let factor = 1.0 + 0.1 * jitter.clamp(-1.0, 1.0);
    base.mul_f64(factor)
}

/// A uniformly random number in [-1, 1] for `jittered`.
///
/// Jitter only spreads retries apart; it needs no secrecy. Each thread runs
/// its own xorshift generator, seeded once from the OS, so that an attempt
/// costs no system call.
pub fn random_jitter() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    fn seed() -> u64 {
        let mut bytes = [0u8; 8];
        let _ = getrandom::getrandom(&mut bytes);
        // xorshift must not start at zero.
        u64::from_le_bytes(bytes) | 1
    }
    let x = STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    ((x >> 32) as u32 as f64 / u32::MAX as f64) * 2.0 - 1.0
}

/// Reads `Retry-After`: delta seconds or an HTTP date (IMF-fixdate).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u32 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u32
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days.checked_mul(86400)? + (*h * 3600 + *m * 60 + *sec) as i64;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: vec![Duration::from_secs(5), Duration::from_secs(300)],
            max_retry_after: Duration::from_secs(3600),
        }
    }

    fn facts(status: Option<u16>, attempts: u32) -> AttemptFacts<'static> {
        AttemptFacts {
            status,
            retry_after: None,
            attempts,
            jitter: 0.0,
            now: UNIX_EPOCH + Duration::from_secs(1_000_000),
        }
    }

    #[test]
    fn success_gone_and_schedule() {
        let p = policy();
        assert_eq!(p.verdict(facts(Some(204), 1)), Verdict::Delivered);
        assert_eq!(p.verdict(facts(Some(410), 1)), Verdict::Gone);
        assert_eq!(
            p.verdict(facts(Some(500), 1)),
            Verdict::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            p.verdict(facts(None, 2)),
            Verdict::RetryAfter(Duration::from_secs(300))
        );
        assert_eq!(p.verdict(facts(Some(500), 3)), Verdict::Dead);
        assert_eq!(p.verdict(facts(Some(302), 3)), Verdict::Dead);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, -1.0), Duration::from_secs(90));
        assert_eq!(jittered(base, 1.0), Duration::from_secs(110));
        assert_eq!(jittered(base, 7.0), Duration::from_secs(110));
        let draws: Vec<f64> = (0..1000).map(|_| random_jitter()).collect();
        assert!(draws.iter().all(|j| (-1.0..=1.0).contains(j)));
        // Spread over the whole range, not stuck: retries must not bunch up.
        assert!(draws.iter().filter(|&&j| j < -0.5).count() > 150);
        assert!(draws.iter().filter(|&&j| j > 0.5).count() > 150);
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only_and_capped() {
        let p = policy();
        let mut f = facts(Some(429), 1);
        f.retry_after = Some("120");
        assert_eq!(p.verdict(f), Verdict::RetryAfter(Duration::from_secs(120)));
        f.status = Some(503);
        assert_eq!(p.verdict(f), Verdict::RetryAfter(Duration::from_secs(120)));
        f.status = Some(500);
        assert_eq!(p.verdict(f), Verdict::RetryAfter(Duration::from_secs(5)));
        f.status = Some(429);
        f.retry_after = Some("999999");
        assert_eq!(p.verdict(f), Verdict::RetryAfter(Duration::from_secs(3600)));
        // A Retry-After shorter than the schedule does not shorten it.
        f.retry_after = Some("1");
        assert_eq!(p.verdict(f), Verdict::RetryAfter(Duration::from_secs(5)));
    }

    #[test]
    fn http_dates() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784111777);
        let now = UNIX_EPOCH + Duration::from_secs(784111777 - 30);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t + Duration::from_secs(9)),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("tomorrow", now), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", now),
            None
        );
    }
}
