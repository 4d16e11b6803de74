//! Which subscriptions receive an event: patterns and tenants. Pure functions.

use crate::model::{Subscription, RESERVED_TYPE_PREFIX};

/// Does `pattern` (an exact type, `prefix.*`, or `*`) match `event_type`?
///
/// Wildcards never match hookd's own `hookd.` types: a subscriber gets
/// operational events only by naming them (`hookd.delivery.dead`, `hookd.*`).
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    let reserved = event_type.starts_with(RESERVED_TYPE_PREFIX);
    if pattern == "*" {
        return !reserved;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        if reserved && !prefix.starts_with(RESERVED_TYPE_PREFIX) {
            return false;
        }
        return prefix.ends_with('.') && event_type.starts_with(prefix);
    }
    pattern == event_type
}

/// Is `pattern` well formed? (`*`, `prefix.*`, or a valid type name.)
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let name = match pattern.strip_suffix(".*") {
        Some(prefix) => prefix,
        None => pattern,
    };
    if crate::model::is_valid_name(name) && !name.contains('*') {
        Ok(())
    } else {
        Err(format!(
            "event pattern {pattern:?} is not a type, prefix.* or *; \
             types are 1-128 chars of [A-Za-z0-9_.:-]"
        ))
    }
}

/// Does `tenant` of an event match a subscription's tenant rule?
pub fn tenant_matches(sub_tenant: Option<&str>, event_tenant: Option<&str>) -> bool {
    match (sub_tenant, event_tenant) {
        (Some("*"), _) => true,
        (Some(want), Some(have)) => want == have,
        (None, None) => true,
        _ => false,
    }
}

/// Does `sub` receive an event of this type and tenant (before filters)?
pub fn subscription_matches(sub: &Subscription, event_type: &str, tenant: Option<&str>) -> bool {
    if !tenant_matches(sub.tenant.as_deref(), tenant) {
        return false;
    }
    if sub.events.is_empty() {
        return !event_type.starts_with(RESERVED_TYPE_PREFIX);
    }
    sub.events.iter().any(|p| pattern_matches(p, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("invoice.paid", "invoice.paid"));
        assert!(!pattern_matches("invoice.paid", "invoice.paid.late"));
        assert!(pattern_matches("invoice.*", "invoice.paid"));
        assert!(pattern_matches("invoice.*", "invoice.paid.late"));
        assert!(!pattern_matches("invoice.*", "invoice"));
        assert!(!pattern_matches("invoice.*", "invoices.paid"));
        assert!(pattern_matches("*", "anything"));
    }

    #[test]
    fn reserved_types_need_explicit_patterns() {
        assert!(!pattern_matches("*", "hookd.delivery.dead"));
        assert!(pattern_matches("hookd.*", "hookd.delivery.dead"));
        assert!(pattern_matches(
            "hookd.delivery.dead",
            "hookd.delivery.dead"
        ));
        assert!(pattern_matches("hookd.delivery.*", "hookd.delivery.dead"));
    }

    #[test]
    fn tenants() {
        assert!(tenant_matches(None, None));
        assert!(!tenant_matches(None, Some("a")));
        assert!(tenant_matches(Some("a"), Some("a")));
        assert!(!tenant_matches(Some("a"), Some("b")));
        assert!(!tenant_matches(Some("a"), None));
        assert!(tenant_matches(Some("*"), None));
        assert!(tenant_matches(Some("*"), Some("b")));
    }

    #[test]
    fn pattern_validation() {
        for ok in ["*", "a.*", "invoice.paid", "a:b-c_d"] {
            assert!(validate_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a*", "*.b", "a b", "a.*.*"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }
}
