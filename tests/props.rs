//! Property tests for every parser of untrusted input: whatever the bytes,
//! a parser answers with a value or a clear error, never a panic, and never
//! allocates out of proportion to its input.

use hookd::config::{parse_duration, parse_size, Config};
use hookd::filter::Filter;
use hookd::ingest::parse_events;
use hookd::model::RateLimit;
use hookd::netpolicy::Cidr;
use hookd::retry::parse_retry_after;
use hookd::signing::parse_secret;
use proptest::prelude::*;
use std::time::{Duration, UNIX_EPOCH};

/// Strings that look a little like the real thing: JSON punctuation, field
/// names, operators and digits mixed with anything.
fn almost_json() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"type\"".to_string()),
        Just("\"data\"".to_string()),
        Just("\"id\"".to_string()),
        Just("\"tenant\"".to_string()),
        Just("\"ordering_key\"".to_string()),
        Just("\"a.b\"".to_string()),
        Just("\"hookd.x\"".to_string()),
        Just("null".to_string()),
        Just("1e999".to_string()),
        Just("-0".to_string()),
        Just("\"\\u0000\"".to_string()),
        "[ -~]{0,8}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

proptest! {
    // 512 cases each in CI; PROPTEST_CASES=100000 for a long run by hand.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn ingest_bodies_never_panic(body in almost_json(), batch in any::<bool>()) {
        let _ = parse_events(body, batch);
    }

    #[test]
    fn ingest_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), batch in any::<bool>()) {
        let _ = parse_events(body, batch);
    }

    #[test]
    fn valid_events_keep_data_byte_for_byte(
        ty in "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}",
        n in any::<i64>(),
        s in "[ -~]{0,40}",
        space in "[ \t\n]{0,3}",
    ) {
        let data = format!("{{{space}\"n\":{space}{n},\"s\":{}}}", serde_json::to_string(&s).unwrap());
        let body = format!("{{\"type\":\"{ty}\",\"data\":{data}}}");
        let events = parse_events(body, false).unwrap();
        prop_assert_eq!(&events[0].data[..], data.as_bytes());
    }

    #[test]
    fn errors_are_messages_not_panics(body in almost_json()) {
        if let Err(message) = parse_events(body.clone(), false) {
            prop_assert!(!message.is_empty());
            // Messages stay short even for long hostile input.
            prop_assert!(message.len() < 1024 + body.len());
        }
    }

    #[test]
    fn filters_never_panic(text in "(/[a-z~01/]{0,10})? ?(==|!=|<|<=|>|>=|in|exists|~|)? ?[ -~]{0,20}") {
        if let Ok(filter) = Filter::parse(&text) {
            let event = serde_json::json!({"type": "t", "data": {"a": 1, "b": "x", "c": [1, 2]}});
            let _ = filter.matches(&event);
        }
    }

    #[test]
    fn config_files_never_panic(text in "(\\[(ingest|admin|storage|delivery|log)\\]\n)?([a-z_]{1,16} = (\"[ -~]{0,12}\"|[0-9]{1,4}|\\[\\]|true)\n){0,4}") {
        let _ = Config::parse(&text);
    }

    #[test]
    fn sizes_and_durations_never_panic(text in "[0-9.]{0,25}[ a-zA-Z]{0,5}") {
        let _ = parse_size(&text);
        let _ = parse_duration(&text);
    }

    #[test]
    fn rate_limits_never_panic(text in "[0-9]{0,12}/?[smh ]{0,3}") {
        let _ = text.parse::<RateLimit>();
    }

    #[test]
    fn cidrs_never_panic(text in "[0-9a-fA-F:.\\[\\]/%]{0,45}") {
        if let Ok(cidr) = text.parse::<Cidr>() {
            // What parses prints back to something that parses to the same network.
            prop_assert_eq!(cidr.to_string().parse::<Cidr>().unwrap(), cidr);
        }
    }

    #[test]
    fn retry_after_never_panics(text in "[ -~]{0,40}") {
        let _ = parse_retry_after(&text, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn secrets_never_panic(text in "(whsec_)?[A-Za-z0-9+/=!]{0,100}") {
        if let Ok(key) = parse_secret(&text) {
            prop_assert!((24..=64).contains(&key.len()));
        }
    }
}
