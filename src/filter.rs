//! Payload filters: `POINTER OP VALUE` conditions on the event as posted.
//!
//! POINTER is a JSON pointer (`/data/amount`, `/tenant`); OP is `==` `!=` `<`
//! `<=` `>` `>=` `in`, or `exists` with no VALUE; VALUE is JSON. A missing
//! field or a type mismatch makes a condition false. Parsed once when a
//! subscription is stored; evaluated against one parsed copy of each event.

use serde_json::Value;
use std::cmp::Ordering;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Exists,
}

/// One parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub pointer: String,
    pub op: Op,
    pub value: Value,
}

impl Filter {
    /// Parses `POINTER OP VALUE`; the error says what is wrong and shows the condition.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let bad = |why: &str| format!("filter {text:?}: {why}");
        let text_trim = text.trim();
        if !text_trim.starts_with('/') {
            return Err(bad("must start with a JSON pointer such as /data/amount"));
        }
        let (pointer, rest) = text_trim.split_once(char::is_whitespace).ok_or_else(|| {
            bad("needs an operator after the pointer (==, !=, <, <=, >, >=, in, exists)")
        })?;
        validate_pointer(pointer).map_err(|e| bad(&e))?;
        let rest = rest.trim_start();
        let (op, value_text) = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (*op, v)))
        .or_else(|| word_op(rest, "in").map(|v| (Op::In, v)))
        .or_else(|| word_op(rest, "exists").map(|v| (Op::Exists, v)))
        .ok_or_else(|| bad("the operator must be one of ==, !=, <, <=, >, >=, in, exists"))?;
        let value_text = value_text.trim();
        if op == Op::Exists {
            if !value_text.is_empty() {
                return Err(bad("exists takes no value"));
            }
            return Ok(Filter {
                pointer: pointer.to_string(),
                op,
                value: Value::Null,
            });
        }
        if value_text.is_empty() {
            return Err(bad(
                "needs a JSON value after the operator, e.g. 100 or \"paid\"",
            ));
        }
        let value: Value = serde_json::from_str(value_text).map_err(|e| {
            bad(&format!(
                "the value {value_text:?} is not JSON ({e}); strings need double quotes"
            ))
        })?;
        match (op, &value) {
            (Op::In, Value::Array(_)) => {}
            (Op::In, _) => return Err(bad("in needs a JSON array, e.g. [\"paid\",\"refunded\"]")),
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Value::Number(_) | Value::String(_)) => {}
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, _) => {
                return Err(bad("<, <=, > and >= compare numbers or strings only"))
            }
            _ => {}
        }
        Ok(Filter {
            pointer: pointer.to_string(),
            op,
            value,
        })
    }

    /// Does the condition hold for `event` (the event as posted, parsed)?
    pub fn matches(&self, event: &Value) -> bool {
        let Some(field) = event.pointer(&self.pointer) else {
            return false;
        };
        match self.op {
            Op::Exists => true,
            Op::Eq => json_eq(field, &self.value),
            Op::Ne => !json_eq(field, &self.value),
            Op::In => match &self.value {
                Value::Array(items) => items.iter().any(|v| json_eq(field, v)),
                _ => false,
            },
            Op::Lt => compare(field, &self.value) == Some(Ordering::Less),
            Op::Le => matches!(
                compare(field, &self.value),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Op::Gt => compare(field, &self.value) == Some(Ordering::Greater),
            Op::Ge => matches!(
                compare(field, &self.value),
                Some(Ordering::Greater | Ordering::Equal)
            ),
        }
    }
}

/// Parses every condition of a subscription.
pub fn parse_all(filters: &[String]) -> Result<Vec<Filter>, String> {
    filters.iter().map(|f| Filter::parse(f)).collect()
}

fn word_op<'a>(rest: &'a str, word: &str) -> Option<&'a str> {
    let after = rest.strip_prefix(word)?;
    (after.is_empty() || after.starts_with(char::is_whitespace)).then_some(after)
}

fn validate_pointer(pointer: &str) -> Result<(), String> {
    let mut chars = pointer.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.peek(), Some('0' | '1')) {
            return Err(format!(
                "pointer {pointer:?} has a ~ not followed by 0 or 1 (write ~0 for ~ and ~1 for /)"
            ));
        }
    }
    if pointer.len() > 1024 {
        return Err("the pointer is longer than 1024 characters".into());
    }
    Ok(())
}

/// JSON equality where numbers compare by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({"type": "invoice.paid", "tenant": "acme",
               "data": {"amount": 150, "status": "paid", "vip": false,
                        "customer": {"tier": "gold", "tags": ["a"]}, "a/b": 1, "ratio": 0.5}})
    }

    fn holds(f: &str) -> bool {
        Filter::parse(f).unwrap().matches(&event())
    }

    #[test]
    fn every_operator() {
        assert!(holds("/data/amount >= 100"));
        assert!(holds("/data/amount > 149.5"));
        assert!(!holds("/data/amount < 100"));
        assert!(holds("/data/amount <= 150"));
        assert!(holds("/data/amount == 150.0"));
        assert!(holds("/data/status != \"refunded\""));
        assert!(holds("/data/status in [\"paid\",\"refunded\"]"));
        assert!(!holds("/data/status in [\"void\"]"));
        assert!(holds("/data/vip exists"));
        assert!(!holds("/data/missing exists"));
        assert!(holds("/tenant == \"acme\""));
        assert!(holds("/data/customer/tier == \"gold\""));
        assert!(holds("/data/a~1b == 1"));
        assert!(holds("/data/status < \"z\""));
    }

    #[test]
    fn missing_fields_and_type_mismatches_are_false() {
        assert!(!holds("/data/nope == 1"));
        assert!(!holds("/data/nope != 1"));
        assert!(!holds("/data/status > 5"));
        assert!(!holds("/data/amount == \"150\""));
        assert!(!holds("/data/customer >= 1"));
    }

    #[test]
    fn bad_syntax_is_explained() {
        for (f, want) in [
            ("data/amount > 1", "JSON pointer"),
            ("/data/amount", "operator"),
            ("/data/amount ~ 1", "one of"),
            ("/data/amount >", "needs a JSON value"),
            ("/data/status == paid", "not JSON"),
            ("/data/status in \"paid\"", "array"),
            ("/data/vip exists true", "no value"),
            ("/data/x > true", "numbers or strings"),
            ("/data/~2 == 1", "~"),
            ("/data/amount inside [1]", "one of"),
        ] {
            let err = Filter::parse(f).unwrap_err();
            assert!(err.contains(want), "{f}: {err}");
            let pointer = f.split(' ').next().unwrap();
            assert!(err.contains(pointer), "{err} should quote the filter");
        }
    }
}
