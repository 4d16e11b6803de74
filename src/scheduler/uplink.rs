//! Is the box's own network up? Connection-level failures to several
//! distinct hosts in a short window, with no success, say it is not.

use crate::model::Millis;
use std::collections::VecDeque;
use std::time::Duration;

/// Detection thresholds and probe/drain settings.
#[derive(Debug, Clone)]
pub struct UplinkSettings {
    pub hosts: u32,
    pub window: Duration,
    pub first_probe: Duration,
    pub max_probe: Duration,
    pub drain_rate: u32,
    pub drain_for: Duration,
}

/// The uplink's state.
#[derive(Debug, Default)]
pub struct Uplink {
    /// Recent connection-level failures: (time, host).
    failures: VecDeque<(Millis, String)>,
    pub down: Option<Down>,
    /// After a recovery: drain at a bounded rate until this time.
    pub draining_until: Option<Millis>,
}

/// The uplink is down: one probe at a time, at growing intervals.
#[derive(Debug, Clone)]
pub struct Down {
    pub since: Millis,
    pub interval: Duration,
    pub next_probe: Millis,
    /// (subscription key, delivery id) of the probe on the wire.
    pub probe: Option<(u64, u64)>,
}

impl Uplink {
    /// A connection-level failure to `host`; true when it marked the uplink down.
    pub fn unreachable(&mut self, host: &str, now: Millis, s: &UplinkSettings) -> bool {
        let window = s.window.as_millis() as Millis;
        while self
            .failures
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) > window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back((now, host.to_string()));
        if self.failures.len() > 1024 {
            self.failures.pop_front();
        }
        if self.down.is_some() {
            return false;
        }
        let mut hosts: Vec<&str> = self.failures.iter().map(|(_, h)| h.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        if hosts.len() >= s.hosts as usize {
            self.down = Some(Down {
                since: now,
                interval: s.first_probe,
                next_probe: now + s.first_probe.as_millis() as Millis,
                probe: None,
            });
            return true;
        }
        false
    }

    /// Any answer from any subscriber proves the network works; true when it
    /// ended an outage (then the backlog drains at a bounded rate).
    pub fn reached(&mut self, now: Millis, s: &UplinkSettings) -> bool {
        self.failures.clear();
        if self.down.take().is_some() {
            self.draining_until = Some(now + s.drain_for.as_millis() as Millis);
            return true;
        }
        false
    }

    /// The probe failed at the connection level again.
    pub fn probe_failed(&mut self, now: Millis, s: &UplinkSettings) {
        if let Some(down) = &mut self.down {
            down.interval = (down.interval * 2).min(s.max_probe);
            down.next_probe = now + down.interval.as_millis() as Millis;
            down.probe = None;
        }
    }

    /// Is the post-recovery drain limit in force?
    pub fn draining(&mut self, now: Millis) -> bool {
        match self.draining_until {
            Some(t) if t > now => true,
            Some(_) => {
                self.draining_until = None;
                false
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> UplinkSettings {
        UplinkSettings {
            hosts: 3,
            window: Duration::from_secs(30),
            first_probe: Duration::from_secs(5),
            max_probe: Duration::from_secs(60),
            drain_rate: 100,
            drain_for: Duration::from_secs(60),
        }
    }

    #[test]
    fn one_host_failing_is_not_an_outage() {
        let mut u = Uplink::default();
        for t in 0..20 {
            assert!(!u.unreachable("a:443", t * 100, &settings()));
        }
        assert!(u.down.is_none());
    }

    #[test]
    fn distinct_hosts_in_the_window_mean_down_and_an_answer_means_up() {
        let s = settings();
        let mut u = Uplink::default();
        assert!(!u.unreachable("a:443", 0, &s));
        assert!(!u.unreachable("b:443", 1000, &s));
        // "a" has left the window by now.
        assert!(!u.unreachable("c:443", 40_000, &s));
        assert!(!u.unreachable("b:443", 41_000, &s));
        assert!(u.unreachable("d:443", 42_000, &s));
        assert_eq!(u.down.as_ref().unwrap().next_probe, 47_000);
        u.probe_failed(47_000, &s);
        assert_eq!(u.down.as_ref().unwrap().next_probe, 57_000);
        assert!(u.reached(60_000, &s));
        assert!(u.draining(61_000));
        assert!(!u.draining(120_001));
    }
}
