//! `pi-subscriber -F`: mosquitto_sub's output format string, printed as
//! mosquitto_sub 2.0 prints it (flags, field widths and precisions, the
//! `%` parameters, `@` times, `\` escapes, and `%j`/`%J` JSON as
//! mosquitto_sub built with cJSON writes it).
//!
//! Times are UTC (`+0000`): mosquitto_sub uses the local time zone, which
//! is the same on a machine set to UTC. `@` takes the strftime conversions
//! listed in [`TIME_CONVERSIONS`] and `@N` (nanoseconds); others are
//! refused when the format is read, with an error naming the supported ones.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use mqtt_client::Publish;

/// The `@X` conversions supported (strftime's `%X`, in UTC).
pub const TIME_CONVERSIONS: &str = "YymdeHMSjsFTDzZ";

#[derive(Debug, Clone)]
enum Token {
    Literal(Vec<u8>),
    Param {
        conv: u8,
        left: bool,
        zero: bool,
        width: usize,
        precision: Option<usize>,
    },
    Time(u8),
}

/// A parsed `-F` format string.
#[derive(Debug, Clone)]
pub struct Format {
    tokens: Vec<Token>,
}

const PARAMS: &[u8] = b"%ACDEFIjJlmPpqRrStUxX";

impl Format {
    /// Reads the format, with mosquitto_sub's error for an unknown `%`
    /// parameter and ours for an `@` conversion not supported here.
    pub fn parse(format: &str) -> Result<Format, String> {
        let f = format.as_bytes();
        let mut tokens = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        let len = f.len();
        while i < len {
            match f[i] {
                b'%' => {
                    if i + 1 >= len {
                        return Err("Error: Incomplete format specifier.".into());
                    }
                    i += 1;
                    let mut left = false;
                    let mut zero = false;
                    let mut width = 0usize;
                    let mut precision = None;
                    if f[i] == b'-' && i < len - 1 {
                        left = true;
                        i += 1;
                    }
                    if f[i] == b'0' && i < len - 1 {
                        zero = true;
                        i += 1;
                    }
                    while i < len - 1 && f[i].is_ascii_digit() {
                        width = width * 10 + usize::from(f[i] - b'0');
                        i += 1;
                    }
                    if f[i] == b'.' && i < len - 1 {
                        i += 1;
                        let mut p = 0usize;
                        while i < len - 1 && f[i].is_ascii_digit() {
                            p = p * 10 + usize::from(f[i] - b'0');
                            i += 1;
                        }
                        precision = Some(p);
                    }
                    let conv = f[i];
                    if !PARAMS.contains(&conv) {
                        return Err(format!(
                            "Error: Invalid format specifier '{}'.",
                            char::from(conv)
                        ));
                    }
                    if !lit.is_empty() {
                        tokens.push(Token::Literal(std::mem::take(&mut lit)));
                    }
                    tokens.push(Token::Param {
                        conv,
                        left,
                        zero,
                        width,
                        precision,
                    });
                }
                b'@' if i + 1 < len => {
                    i += 1;
                    let c = f[i];
                    if c == b'@' {
                        lit.push(b'@');
                    } else if c == b'N' || TIME_CONVERSIONS.as_bytes().contains(&c) {
                        if !lit.is_empty() {
                            tokens.push(Token::Literal(std::mem::take(&mut lit)));
                        }
                        tokens.push(Token::Time(c));
                    } else {
                        return Err(format!(
                            "Error: the time conversion '@{}' is not supported by pi-subscriber \
                             (supported: @@ @N {}).",
                            char::from(c),
                            TIME_CONVERSIONS
                                .chars()
                                .map(|c| format!("@{c}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ));
                    }
                }
                b'\\' if i + 1 < len => {
                    i += 1;
                    match f[i] {
                        b'\\' => lit.push(b'\\'),
                        b'0' => lit.push(0),
                        b'a' => lit.push(7),
                        b'e' => lit.push(0x1b),
                        b'n' => lit.push(b'\n'),
                        b'r' => lit.push(b'\r'),
                        b't' => lit.push(b'\t'),
                        b'v' => lit.push(0x0b),
                        // mosquitto_sub prints nothing for another escape.
                        _ => {}
                    }
                }
                // A lone trailing '@' or '\' prints nothing, as mosquitto_sub.
                b'@' | b'\\' => {}
                c => lit.push(c),
            }
            i += 1;
        }
        if !lit.is_empty() {
            tokens.push(Token::Literal(lit));
        }
        Ok(Format { tokens })
    }

    /// Writes one message; `Err` (mosquitto_sub's message for stderr) for a
    /// `%J` payload that is not JSON, after writing what came before it.
    pub fn write(&self, out: &mut Vec<u8>, m: &Publish) -> Result<(), String> {
        let now = Now::get();
        let mut error = None;
        for t in &self.tokens {
            match t {
                Token::Literal(l) => out.extend_from_slice(l),
                Token::Time(c) => now.strftime(out, *c),
                Token::Param {
                    conv,
                    left,
                    zero,
                    width,
                    precision,
                } => {
                    let pad = if *zero { b'0' } else { b' ' };
                    if let Err(e) = param(out, m, &now, *conv, *left, pad, *width, *precision) {
                        // mosquitto_sub reports it and carries on with the rest.
                        error.get_or_insert(e);
                    }
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn param(
    out: &mut Vec<u8>,
    m: &Publish,
    now: &Now,
    conv: u8,
    left: bool,
    pad: u8,
    width: usize,
    precision: Option<usize>,
) -> Result<(), String> {
    let props = &m.properties;
    let mid = m.packet_id.map_or(0, |p| u32::from(p.get()));
    match conv {
        b'%' => out.push(b'%'),
        b'A' => opt_int(out, props.topic_alias.map(u64::from), left, pad, width),
        b'C' => match &props.content_type {
            Some(c) => str_field(out, c.as_bytes(), left, width, precision),
            None => blank(out, b' ', width),
        },
        b'D' => {
            if let Some(d) = &props.correlation_data {
                out.extend_from_slice(d);
            }
        }
        b'E' => opt_int(
            out,
            props.message_expiry_interval.map(u64::from),
            left,
            pad,
            width,
        ),
        b'F' => opt_int(
            out,
            props.payload_format_indicator.map(u64::from),
            left,
            pad,
            width,
        ),
        b'I' => {
            let s = now.iso8601();
            str_field(out, s.as_bytes(), left, width, precision)
        }
        b'j' => json(out, m, now, true)?,
        b'J' => json(out, m, now, false)?,
        b'l' => int(out, m.payload.len() as u64, left, pad, width),
        b'm' => int(out, u64::from(mid), left, pad, width),
        b'P' => {
            let pairs: Vec<String> = props
                .user_properties
                .iter()
                .map(|(k, v)| format!("{}:{}", k.as_str(), v.as_str()))
                .collect();
            out.extend_from_slice(pairs.join(" ").as_bytes());
        }
        b'p' => payload(out, &m.payload, 0, left, pad, width),
        b'q' => out.push(b'0' + m.qos.as_u8()),
        b'R' => {
            if let Some(r) = &props.response_topic {
                str_field(out, r.as_bytes(), left, width, precision)
            }
        }
        b'r' => out.push(if m.retain { b'1' } else { b'0' }),
        b'S' => opt_int(
            out,
            props
                .subscription_identifiers
                .first()
                .map(|&s| u64::from(s)),
            left,
            pad,
            width,
        ),
        b't' => str_field(out, m.topic.as_str().as_bytes(), left, width, precision),
        b'U' => {
            let _ = write!(out, "{}.{:09}", now.secs, now.nanos);
        }
        b'x' => payload(out, &m.payload, 1, left, pad, width),
        b'X' => payload(out, &m.payload, 2, left, pad, width),
        _ => {}
    }
    Ok(())
}

fn blank(out: &mut Vec<u8>, pad: u8, width: usize) {
    out.extend(std::iter::repeat_n(pad, width));
}

fn int(out: &mut Vec<u8>, v: u64, left: bool, pad: u8, width: usize) {
    let s = v.to_string();
    if left {
        let _ = write!(out, "{s:<width$}");
    } else if pad == b'0' {
        let _ = write!(out, "{s:0>width$}");
    } else {
        let _ = write!(out, "{s:>width$}");
    }
}

fn opt_int(out: &mut Vec<u8>, v: Option<u64>, left: bool, pad: u8, width: usize) {
    match v {
        Some(v) => int(out, v, left, pad, width),
        None => blank(out, pad, width),
    }
}

/// printf's `%-*.*s` on bytes.
fn str_field(out: &mut Vec<u8>, s: &[u8], left: bool, width: usize, precision: Option<usize>) {
    let s = match precision {
        Some(p) if p < s.len() => &s[..p],
        _ => s,
    };
    let padding = width.saturating_sub(s.len());
    if !left {
        blank(out, b' ', padding);
    }
    out.extend_from_slice(s);
    if left {
        blank(out, b' ', padding);
    }
}

/// mosquitto_sub's write_payload, quirks included: with a field width, at
/// most that many bytes are printed (hex: half as many).
fn payload(out: &mut Vec<u8>, p: &[u8], hex: u8, left: bool, pad: u8, width: usize) {
    let width = width as i64;
    let mut n = p.len() as i64;
    let padlen;
    if width > 0 {
        n = n.min(width);
        if hex > 0 {
            n /= 2;
            padlen = width - n * 2;
        } else {
            padlen = width - n;
        }
    } else {
        padlen = width - n;
    }
    if !left {
        for _ in 0..padlen {
            out.push(pad);
        }
    }
    let bytes = &p[..n as usize];
    match hex {
        0 => out.extend_from_slice(bytes),
        1 => bytes.iter().for_each(|b| {
            let _ = write!(out, "{b:02x}");
        }),
        _ => bytes.iter().for_each(|b| {
            let _ = write!(out, "{b:02X}");
        }),
    }
    if left {
        // printf("%*s", padlen, ""): a negative width pads left-aligned too.
        blank(out, b' ', padlen.unsigned_abs() as usize);
    }
}

/// cJSON's string escaping.
fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                let _ = write!(out, "\\u{b:04x}");
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

fn json(out: &mut Vec<u8>, m: &Publish, now: &Now, escaped: bool) -> Result<(), String> {
    // %J: the payload must be JSON; nothing is printed otherwise.
    let parsed = if escaped || m.payload.is_empty() {
        None
    } else {
        let mut p = JsonReader {
            s: &m.payload,
            i: 0,
            out: Vec::new(),
        };
        match p.document() {
            Some(()) => Some(p.out),
            None => {
                return Err(format!(
                    "Error: Message payload is not valid JSON on topic {}.",
                    m.topic.as_str()
                ))
            }
        }
    };
    out.extend_from_slice(b"{\"tst\":");
    json_string(out, now.json_time().as_bytes());
    out.extend_from_slice(b",\"topic\":");
    json_string(out, m.topic.as_str().as_bytes());
    let _ = write!(
        out,
        ",\"qos\":{},\"retain\":{},\"payloadlen\":{}",
        m.qos.as_u8(),
        u8::from(m.retain),
        m.payload.len()
    );
    if let Some(id) = m.packet_id {
        let _ = write!(out, ",\"mid\":{}", id.get());
    }
    let p = &m.properties;
    if !p.is_empty() {
        // In the order this workspace's codec writes them (identifier order).
        out.extend_from_slice(b",\"properties\":{");
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, k: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            let _ = write!(out, "\"{k}\":");
        };
        if let Some(v) = p.payload_format_indicator {
            key(out, "payload-format-indicator");
            let _ = write!(out, "{}", u8::from(v));
        }
        if let Some(v) = p.message_expiry_interval {
            key(out, "message-expiry-interval");
            let _ = write!(out, "{v}");
        }
        if let Some(v) = &p.content_type {
            key(out, "content-type");
            json_string(out, v.as_bytes());
        }
        if let Some(v) = &p.response_topic {
            key(out, "response-topic");
            json_string(out, v.as_bytes());
        }
        if let Some(v) = &p.correlation_data {
            key(out, "correlation-data");
            json_string(out, v);
        }
        for v in &p.subscription_identifiers {
            key(out, "subscription-identifier");
            let _ = write!(out, "{v}");
        }
        if let Some(v) = p.topic_alias {
            key(out, "topic-alias");
            let _ = write!(out, "{v}");
        }
        if !p.user_properties.is_empty() {
            key(out, "user-properties");
            out.push(b'{');
            for (i, (k, v)) in p.user_properties.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(out, k.as_bytes());
                out.push(b':');
                json_string(out, v.as_bytes());
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"payload\":");
    if m.payload.is_empty() {
        out.extend_from_slice(b"null");
    } else if let Some(json) = parsed {
        out.extend_from_slice(&json);
    } else if m.payload.iter().all(|b| (0x20..0x7f).contains(b)) {
        json_string(out, &m.payload);
    } else {
        // Not printable ASCII: an array of the bytes, as cJSON's mosquitto_sub.
        out.push(b'[');
        for (i, b) in m.payload.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{b}");
        }
        out.push(b']');
    }
    out.push(b'}');
    Ok(())
}

/// Checks a JSON document and writes it back without white space, as
/// cJSON_PrintUnformatted does (numbers: integers as integers, others in
/// Rust's shortest form, which matches cJSON's `%1.15g` for usual values).
struct JsonReader<'a> {
    s: &'a [u8],
    i: usize,
    out: Vec<u8>,
}

impl JsonReader<'_> {
    fn document(&mut self) -> Option<()> {
        self.value()?;
        self.ws();
        (self.i == self.s.len()).then_some(())
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> Option<()> {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            self.out.extend_from_slice(lit);
            Some(())
        } else {
            None
        }
    }

    fn value(&mut self) -> Option<()> {
        self.ws();
        match *self.s.get(self.i)? {
            b'{' => {
                self.i += 1;
                self.out.push(b'{');
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    self.out.push(b'}');
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    self.out.push(b':');
                    self.value()?;
                    self.ws();
                    match self.s.get(self.i)? {
                        b',' => {
                            self.i += 1;
                            self.out.push(b',');
                        }
                        b'}' => {
                            self.i += 1;
                            self.out.push(b'}');
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.out.push(b'[');
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    self.out.push(b']');
                    return Some(());
                }
                loop {
                    self.value()?;
                    self.ws();
                    match self.s.get(self.i)? {
                        b',' => {
                            self.i += 1;
                            self.out.push(b',');
                        }
                        b']' => {
                            self.i += 1;
                            self.out.push(b']');
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string(),
            b't' => self.eat(b"true"),
            b'f' => self.eat(b"false"),
            b'n' => self.eat(b"null"),
            _ => self.number(),
        }
    }

    fn string(&mut self) -> Option<()> {
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut raw = Vec::new();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => raw.push(e),
                        b'b' => raw.push(8),
                        b'f' => raw.push(12),
                        b'n' => raw.push(b'\n'),
                        b'r' => raw.push(b'\r'),
                        b't' => raw.push(b'\t'),
                        b'u' => {
                            let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                            let mut c = u32::from_str_radix(hex, 16).ok()?;
                            self.i += 4;
                            if (0xd800..0xdc00).contains(&c) && self.s[self.i..].starts_with(b"\\u")
                            {
                                let hex = std::str::from_utf8(self.s.get(self.i + 2..self.i + 6)?)
                                    .ok()?;
                                let low = u32::from_str_radix(hex, 16).ok()?;
                                self.i += 6;
                                c = 0x10000
                                    + ((c - 0xd800) << 10)
                                    + (low.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            let ch = char::from_u32(c)?;
                            let mut buf = [0; 4];
                            raw.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                b => raw.push(b),
            }
        }
        json_string(&mut self.out, &raw);
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        let v: f64 = text.parse().ok()?;
        if v.fract() == 0.0 && v.abs() < 2147483648.0 {
            let _ = write!(self.out, "{}", v as i64);
        } else {
            let _ = write!(self.out, "{v}");
        }
        Some(())
    }
}

/// The time of a message, in UTC.
struct Now {
    secs: u64,
    nanos: u32,
}

impl Now {
    fn get() -> Now {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Now {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }

    /// (year, month, day, hour, minute, second, day of the year).
    fn civil(&self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let days = (self.secs / 86_400) as i64;
        let rem = self.secs % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i64::from(m <= 2);
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday = CUM[(m - 1) as usize] + d + u32::from(leap && m > 2);
        (
            y,
            m,
            d,
            (rem / 3600) as u32,
            (rem / 60 % 60) as u32,
            (rem % 60) as u32,
            yday,
        )
    }

    fn iso8601(&self) -> String {
        let (y, mo, d, h, mi, s, _) = self.civil();
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000")
    }

    fn json_time(&self) -> String {
        let (y, mo, d, h, mi, s, _) = self.civil();
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}Z+0000",
            self.nanos / 1000
        )
    }

    fn strftime(&self, out: &mut Vec<u8>, c: u8) {
        let (y, mo, d, h, mi, s, yday) = self.civil();
        let _ = match c {
            b'Y' => write!(out, "{y}"),
            b'y' => write!(out, "{:02}", y % 100),
            b'm' => write!(out, "{mo:02}"),
            b'd' => write!(out, "{d:02}"),
            b'e' => write!(out, "{d:>2}"),
            b'H' => write!(out, "{h:02}"),
            b'M' => write!(out, "{mi:02}"),
            b'S' => write!(out, "{s:02}"),
            b'j' => write!(out, "{yday:03}"),
            b's' => write!(out, "{}", self.secs),
            b'F' => write!(out, "{y:04}-{mo:02}-{d:02}"),
            b'T' => write!(out, "{h:02}:{mi:02}:{s:02}"),
            b'D' => write!(out, "{mo:02}/{d:02}/{:02}", y % 100),
            b'z' => write!(out, "+0000"),
            b'Z' => write!(out, "UTC"),
            b'N' => write!(out, "{:09}", self.nanos),
            _ => Ok(()),
        };
    }
}
