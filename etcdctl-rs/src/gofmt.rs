//! Reproductions of the Go formatting etcdctl's output is made of: `%q` quoting, `encoding/json` strings,
//! `strconv.Unquote`, durations, go-humanize byte sizes, and the `%016x`-style hex helpers.

use std::fmt::Write as _;
use std::time::Duration;

/// Go's `strconv.Quote` (what `%q` prints for a string): printable runes kept, everything else escaped;
/// invalid UTF-8 bytes become `\x..`.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        let (ch, len) = match decode_utf8(rest) {
            Some(v) => v,
            None => {
                let _ = write!(out, "\\x{:02x}", rest[0]);
                rest = &rest[1..];
                continue;
            }
        };
        rest = &rest[len..];
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn decode_utf8(b: &[u8]) -> Option<(char, usize)> {
    let len = match b[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    if b.len() < len {
        return None;
    }
    std::str::from_utf8(&b[..len]).ok().and_then(|s| s.chars().next()).map(|c| (c, len))
}

/// Approximation of Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols, ASCII space).
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    // Unassigned/private/format ranges Go rejects that `char` methods do not flag.
    !matches!(u, 0xad | 0x600..=0x605 | 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xf0000..=0x10ffff | 0xd800..=0xdfff)
}

/// A Go `encoding/json` string literal: `<`, `>`, `&`, U+2028 and U+2029 escaped, invalid UTF-8 replaced.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go `strconv.Unquote` of a double-quoted literal (the `%q` verb of `fmt.Sscanf`).
pub fn unquote(lit: &str) -> Option<Vec<u8>> {
    let inner = lit.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {
                let e = chars.next()?;
                match e {
                    'a' => out.push(7),
                    'b' => out.push(8),
                    'f' => out.push(12),
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    'v' => out.push(11),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    '\'' => return None,
                    'x' => {
                        let h: String = (0..2).filter_map(|_| chars.next()).collect();
                        out.push(u8::from_str_radix(&h, 16).ok().filter(|_| h.len() == 2)?);
                    }
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let h: String = (0..n).filter_map(|_| chars.next()).collect();
                        if h.len() != n {
                            return None;
                        }
                        let ch = char::from_u32(u32::from_str_radix(&h, 16).ok()?)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    '0'..='7' => {
                        let mut s = String::from(e);
                        for _ in 0..2 {
                            s.push(chars.next()?);
                        }
                        let v = u32::from_str_radix(&s, 8).ok()?;
                        out.push(u8::try_from(v).ok()?);
                    }
                    _ => return None,
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Some(out)
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let bad = || format!("time: invalid duration {}", quote(orig.as_bytes()));
    let mut s = s;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !s.is_empty() {
        let num_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        if num_len == 0 {
            return Err(bad());
        }
        let v: f64 = s[..num_len].parse().map_err(|_| bad())?;
        s = &s[num_len..];
        let unit_len = s.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(s.len());
        let mult = match &s[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {}", quote(orig.as_bytes()))),
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(u.as_bytes()),
                    quote(orig.as_bytes())
                ))
            }
        };
        total += v * mult;
        s = &s[unit_len..];
    }
    if neg {
        // Negative timeouts expire at once.
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_secs_f64(total))
}

/// Go's `time.Duration.String()`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim_float(ns as f64 / 1e3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim_float(ns as f64 / 1e6));
    }
    let total_secs = ns as f64 / 1e9;
    let h = (ns / 3_600_000_000_000) as u64;
    let m = ((ns / 60_000_000_000) % 60) as u64;
    let s = total_secs - (h * 3600 + m * 60) as f64;
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{}s", trim_float(s));
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// go-humanize `Bytes`: SI units, one decimal below 10.
pub fn humanize_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = ((s as f64).ln() / 1000f64.ln()).floor();
    let suffix = SIZES[e as usize];
    let val = ((s as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{} {suffix}", go_fixed(val, 1))
    } else {
        format!("{} {suffix}", go_fixed(val, 0))
    }
}

/// `%.Nf` with round-half-to-even on the exact binary value, as Go's strconv does.
pub fn go_fixed(v: f64, prec: usize) -> String {
    format!("{v:.prec$}")
}

/// etcdctl's `--hex` rendering: every byte as `\xNN`.
pub fn hex_escaped(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 4);
    for x in b {
        let _ = write!(s, "\\x{x:02x}");
    }
    s
}

/// Go `strconv.ParseInt(s, base, 64)` error text for etcdctl's messages.
pub fn parse_int_err(s: &str, base: u32) -> Result<i64, String> {
    i64::from_str_radix(s, base).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing {}: {why}", quote(s.as_bytes()))
    })
}

/// Go `strconv.ParseUint(s, base, 64)` with its error text.
pub fn parse_uint_err(s: &str, base: u32) -> Result<u64, String> {
    u64::from_str_radix(s, base).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.ParseUint: parsing {}: {why}", quote(s.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go() {
        assert_eq!(quote(b"foo"), "\"foo\"");
        assert_eq!(quote(b"a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(quote(b"\x00\xff"), "\"\\x00\\xff\"");
        assert_eq!(quote("héllo".as_bytes()), "\"héllo\"");
        assert_eq!(quote(b"\x7f"), "\"\\x7f\"");
    }

    #[test]
    fn json_strings_match_go() {
        assert_eq!(json_string("a<b>&\"c\"\n"), "\"a\\u003cb\\u003e\\u0026\\\"c\\\"\\n\"");
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote("\"a\\x41\\n\\u00e9\\101\"").unwrap(), "aA\né A".replace(' ', "").as_bytes());
        assert!(unquote("\"unterminated").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("150ms").unwrap(), Duration::from_millis(150));
        assert!(parse_duration("5").is_err());
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_micros(2466798)), "2.466798s");
        assert_eq!(format_duration(Duration::from_nanos(2_466_798)), "2.466798ms");
        assert_eq!(format_duration(Duration::from_secs(3690)), "1h1m30s");
    }

    #[test]
    fn humanized_sizes() {
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(1500), "1.5 kB");
        assert_eq!(humanize_bytes(2_500_000), "2.5 MB");
        assert_eq!(humanize_bytes(25_000), "25 kB");
    }

    #[test]
    fn hex() {
        assert_eq!(hex_escaped(b"ab"), "\\x61\\x62");
    }
}
