//! Formatting for people: tables, key/value blocks, relative times, sizes,
//! and a JSON re-indenter that keeps the bytes of the API's answer.

use std::time::{SystemTime, UNIX_EPOCH};

/// Horizontal alignment of a table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// One column of a [`Table`].
#[derive(Debug, Clone)]
pub(crate) struct Col {
    header: &'static str,
    max: Option<usize>,
    align: Align,
    optional: bool,
}

impl Col {
    pub(crate) fn new(header: &'static str) -> Self {
        Col {
            header,
            max: None,
            align: Align::Left,
            optional: false,
        }
    }

    /// Truncate cells longer than `max` characters (with a trailing `…`).
    pub(crate) fn max(mut self, max: usize) -> Self {
        self.max = Some(max.max(1));
        self
    }

    /// Right-align (numbers).
    pub(crate) fn right(mut self) -> Self {
        self.align = Align::Right;
        self
    }

    /// Leave the column out when no row has a value in it (every cell empty or `-`).
    pub(crate) fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// A plain-text table: a header line, then rows, columns padded to align and
/// separated by two spaces. No trailing whitespace.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    cols: Vec<Col>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(cols: Vec<Col>) -> Self {
        Table {
            cols,
            rows: Vec::new(),
        }
    }

    /// Add a row; missing cells are empty, extra cells are dropped.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .take(self.cols.len())
            .zip(&self.cols)
            .map(|(c, col)| truncate(&one_line(&c, usize::MAX), col.max.unwrap_or(usize::MAX)))
            .collect();
        cells.resize(self.cols.len(), String::new());
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn render(&self) -> String {
        let shown: Vec<usize> = (0..self.cols.len())
            .filter(|&i| {
                !self.cols[i].optional || self.rows.iter().any(|r| !r[i].is_empty() && r[i] != "-")
            })
            .collect();
        let widths: Vec<usize> = shown
            .iter()
            .map(|&i| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain(std::iter::once(width(self.cols[i].header)))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<&str> = shown.iter().map(|&i| self.cols[i].header).collect();
        let mut line = |cells: &[&str]| {
            let mut l = String::new();
            for (n, (&i, cell)) in shown.iter().zip(cells).enumerate() {
                if n > 0 {
                    l.push_str("  ");
                }
                let pad = widths[n].saturating_sub(width(cell));
                match self.cols[i].align {
                    Align::Left => {
                        l.push_str(cell);
                        l.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        l.extend(std::iter::repeat_n(' ', pad));
                        l.push_str(cell);
                    }
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&header);
        for r in &self.rows {
            let cells: Vec<&str> = shown.iter().map(|&i| r[i].as_str()).collect();
            line(&cells);
        }
        out
    }
}

/// A key/value block: `key:` padded so that the values line up; values with
/// several lines are indented under the first.
pub(crate) fn kv_block(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| width(k) + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let key = format!("{k}:");
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        let l = format!("{key:<w$}  {}", sanitize(first, false));
        out.push_str(l.trim_end());
        out.push('\n');
        for more in lines {
            let l = format!("{:w$}  {}", "", sanitize(more, false));
            out.push_str(l.trim_end());
            out.push('\n');
        }
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Cut `s` to at most `max` characters, ending with `…` when it was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Make text safe for a terminal: control characters (which could carry
/// escape sequences from a webhook receiver's response) become `\u{FFFD}`;
/// tabs become spaces; newlines are kept only when `keep_newlines`.
pub(crate) fn sanitize(s: &str, keep_newlines: bool) -> String {
    s.chars()
        .filter(|&c| c != '\r')
        .map(|c| match c {
            '\n' if keep_newlines => '\n',
            '\n' | '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Sanitised, on one line (runs of whitespace collapsed), cut to `max` characters.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let clean = sanitize(s, false);
    let joined = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&joined, max)
}

/// `-` for a missing or empty value.
pub(crate) fn or_dash(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Parse an RFC 3339 time (`2024-05-01T10:00:00.123Z`, any offset, `T`/`t`/space
/// separator) into milliseconds since the Unix epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_secs = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `3s ago`, `in 5m`, `now`; one unit (s, m, h, d), rounded down.
pub(crate) fn relative_ms(then_ms: i64, now_ms: i64) -> String {
    let delta = then_ms.saturating_sub(now_ms);
    let secs = (delta / 1000).unsigned_abs();
    if secs == 0 {
        return "now".to_string();
    }
    let span = compact_unit(secs);
    if delta < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

fn compact_unit(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The relative form of an RFC 3339 time from the API, or the string as is
/// when it does not parse.
pub(crate) fn relative(ts: &str, now_ms: i64) -> String {
    match parse_rfc3339(ts) {
        Some(t) => relative_ms(t, now_ms),
        None => sanitize(ts, false),
    }
}

/// `-` for no time, else the relative form.
pub(crate) fn relative_opt(ts: Option<&str>, now_ms: i64) -> String {
    ts.map_or_else(|| "-".to_string(), |t| relative(t, now_ms))
}

/// `2024-05-01T10:00:00.000Z (3h ago)`.
pub(crate) fn time_and_relative(ts: &str, now_ms: i64) -> String {
    match parse_rfc3339(ts) {
        Some(t) => format!("{ts} ({})", relative_ms(t, now_ms)),
        None => ts.to_string(),
    }
}

/// `3d 4h`, `2h 5m`, `5m 3s`, `42s`: the two largest units.
pub(crate) fn duration_secs(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            // a zero unit after the first ends the display (`2h`, not `2h 0m`)
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

/// `512 B`, `1.5 KiB`, `12.3 MiB`, ...
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `503 Service Unavailable`.
pub(crate) fn http_status(code: u16) -> String {
    match hyper::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

/// `120ms`, `1.2s`, `75s`.
pub(crate) fn latency(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..10_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}s", ms / 1000),
    }
}

/// Re-indent JSON text the way `serde_json::to_string_pretty` does, without
/// parsing it into values: key order, number spelling and string escapes stay
/// exactly as received. `text` must be valid JSON (check it first).
pub(crate) fn reindent_json(text: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let end = (i + 1).min(b.len());
                out.push_str(&text[start..end]);
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && b[j] == close {
                    out.push(char::from(c));
                    out.push(char::from(close));
                    i = j;
                } else {
                    out.push(char::from(c));
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(char::from(c));
            }
            b',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            b':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            _ => {
                // numbers and literals: ASCII up to the next structural byte
                let start = i;
                while i + 1 < b.len()
                    && !matches!(b[i + 1], b',' | b'}' | b']' | b':' | b'"')
                    && !b[i + 1].is_ascii_whitespace()
                {
                    i += 1;
                }
                out.push_str(&text[start..=i]);
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_has_no_trailing_space() {
        let mut t = Table::new(vec![
            Col::new("ID"),
            Col::new("NAME"),
            Col::new("COUNT").right(),
        ]);
        t.row(vec!["a".into(), "longer name".into(), "7".into()]);
        t.row(vec!["bbbbbb".into(), "x".into(), "1234".into()]);
        assert_eq!(
            t.render(),
            "ID      NAME         COUNT\n\
             a       longer name      7\n\
             bbbbbb  x             1234\n"
        );
    }

    #[test]
    fn table_last_left_column_is_not_padded() {
        let mut t = Table::new(vec![Col::new("A"), Col::new("B")]);
        t.row(vec!["1".into(), "long".into()]);
        t.row(vec!["2".into(), "x".into()]);
        let out = t.render();
        assert!(out.lines().all(|l| l == l.trim_end()), "{out:?}");
        assert_eq!(out, "A  B\n1  long\n2  x\n");
    }

    #[test]
    fn table_truncates_long_cells_with_ellipsis() {
        let mut t = Table::new(vec![Col::new("URL").max(10), Col::new("N")]);
        t.row(vec!["https://example.com/hook".into(), "1".into()]);
        t.row(vec!["short".into(), "2".into()]);
        assert_eq!(
            t.render(),
            "URL         N\n\
             https://e…  1\n\
             short       2\n"
        );
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut t = Table::new(vec![Col::new("T"), Col::new("X")]);
        t.row(vec!["é".into(), "1".into()]);
        t.row(vec!["ab".into(), "2".into()]);
        assert_eq!(t.render(), "T   X\né   1\nab  2\n");
    }

    #[test]
    fn table_cells_are_one_line_and_free_of_control_chars() {
        let mut t = Table::new(vec![Col::new("ERR"), Col::new("N")]);
        t.row(vec!["bad\ngateway\x1b[31m".into(), "1".into()]);
        assert_eq!(
            t.render(),
            "ERR               N\nbad gateway\u{FFFD}[31m  1\n"
        );
    }

    #[test]
    fn table_optional_column_hidden_when_empty() {
        let mut t = Table::new(vec![
            Col::new("ID"),
            Col::new("KEY").optional(),
            Col::new("S"),
        ]);
        t.row(vec!["1".into(), "-".into(), "ok".into()]);
        assert_eq!(t.render(), "ID  S\n1   ok\n");
        t.row(vec!["2".into(), "k".into(), "ok".into()]);
        assert_eq!(t.render(), "ID  KEY  S\n1   -    ok\n2   k    ok\n");
    }

    #[test]
    fn table_pads_short_rows() {
        let mut t = Table::new(vec![Col::new("A"), Col::new("B"), Col::new("C")]);
        t.row(vec!["x".into()]);
        assert_eq!(t.render(), "A  B  C\nx\n");
        assert!(!t.is_empty());
    }

    #[test]
    fn kv_block_aligns_values_and_indents_continuations() {
        let out = kv_block(&[
            ("id", "s1".into()),
            ("max in flight", "4".into()),
            ("headers", "A: 1\nB: 2".into()),
            ("empty", String::new()),
        ]);
        assert_eq!(
            out,
            "id:             s1\n\
             max in flight:  4\n\
             headers:        A: 1\n\
             \x20               B: 2\n\
             empty:\n"
        );
    }

    #[test]
    fn truncate_edges() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("abcd", 1), "…");
        assert_eq!(one_line("  a \n\n b\t c ", 100), "a b c");
    }

    #[test]
    fn rfc3339_parses_utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.123456Z"), Some(1123));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.789Z"),
            Some(1_709_210_096_789)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:34:56.789+02:00"),
            parse_rfc3339("2024-02-29T12:34:56.789Z")
        );
        assert_eq!(
            parse_rfc3339("2024-02-29t07:04:56.789-05:30"),
            parse_rfc3339("2024-02-29T12:34:56.789Z")
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1000));
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01X00:00:00Z",
            "not a time at all!!!",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn relative_times_past_and_future_in_each_unit() {
        let now = 1_000_000_000_000;
        let s = 1000;
        assert_eq!(relative_ms(now, now), "now");
        assert_eq!(relative_ms(now - 999, now), "now");
        assert_eq!(relative_ms(now - 3 * s, now), "3s ago");
        assert_eq!(relative_ms(now + 3 * s, now), "in 3s");
        assert_eq!(relative_ms(now - 59 * s, now), "59s ago");
        assert_eq!(relative_ms(now - 60 * s, now), "1m ago");
        assert_eq!(relative_ms(now + 5 * 60 * s + 59 * s, now), "in 5m");
        assert_eq!(relative_ms(now - 3600 * s, now), "1h ago");
        assert_eq!(relative_ms(now + 23 * 3600 * s, now), "in 23h");
        assert_eq!(relative_ms(now - 86_400 * s, now), "1d ago");
        assert_eq!(relative_ms(now + 40 * 86_400 * s, now), "in 40d");
    }

    #[test]
    fn relative_from_api_strings() {
        let now = parse_rfc3339("2024-05-01T10:00:00.000Z").unwrap();
        assert_eq!(relative("2024-05-01T09:59:57.000Z", now), "3s ago");
        assert_eq!(relative("2024-05-01T10:05:00.000Z", now), "in 5m");
        assert_eq!(relative("2024-04-29T10:00:00.000Z", now), "2d ago");
        assert_eq!(relative("garbage", now), "garbage");
        assert_eq!(relative_opt(None, now), "-");
        assert_eq!(
            time_and_relative("2024-05-01T07:00:00.000Z", now),
            "2024-05-01T07:00:00.000Z (3h ago)"
        );
    }

    #[test]
    fn durations_sizes_latencies() {
        assert_eq!(duration_secs(0), "0s");
        assert_eq!(duration_secs(42), "42s");
        assert_eq!(duration_secs(303), "5m 3s");
        assert_eq!(duration_secs(7200), "2h");
        assert_eq!(duration_secs(7500), "2h 5m");
        assert_eq!(duration_secs(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(latency(120), "120ms");
        assert_eq!(latency(1250), "1.2s");
        assert_eq!(latency(75_000), "75s");
        assert_eq!(http_status(503), "503 Service Unavailable");
        assert_eq!(http_status(599), "599");
    }

    #[test]
    fn reindent_matches_serde_pretty_and_keeps_bytes() {
        let text = r#"{"z":1,"a":[1,2.50,{"b":"x,\"}]:y"}],"e":{},"f":[ ],"n":null,"u":"é\u00e9"}"#;
        let out = reindent_json(text);
        assert_eq!(
            out,
            "{\n  \"z\": 1,\n  \"a\": [\n    1,\n    2.50,\n    {\n      \"b\": \"x,\\\"}]:y\"\n    }\n  ],\n  \"e\": {},\n  \"f\": [],\n  \"n\": null,\n  \"u\": \"é\\u00e9\"\n}"
        );
        // same layout as serde_json when the input is already canonical
        let v: serde_json::Value = serde_json::from_str(r#"{"a":[1,{"b":true}],"c":"d"}"#).unwrap();
        let compact = serde_json::to_string(&v).unwrap();
        assert_eq!(
            reindent_json(&compact),
            serde_json::to_string_pretty(&v).unwrap()
        );
        let spaced = serde_json::to_string_pretty(&v).unwrap();
        assert_eq!(reindent_json(&spaced), spaced);
        assert_eq!(reindent_json("42"), "42");
        assert_eq!(reindent_json("\"s\""), "\"s\"");
    }
}
