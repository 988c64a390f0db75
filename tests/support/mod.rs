//! Support for `tests/guide.rs`: reading the marked snippets of a doc,
//! substituting the test's ports and addresses, and running the commands as
//! child processes whose output is collected and which are killed on drop.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The marked snippets of one Markdown file.
///
/// ````text
/// <!-- guide-step: NAME -->      followed by a ```sh block: one command
/// <!-- guide-file: FILE -->      followed by a ``` block: a file the commands use
/// <!-- guide-output: NAME -->    followed by a ```text block: lines the output of step NAME contains
/// ````
#[derive(Debug, Default)]
pub struct Doc {
    pub path: PathBuf,
    pub steps: BTreeMap<String, String>,
    pub files: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, Vec<String>>,
}

impl Doc {
    /// Reads `docs/NAME` of the workspace and extracts its marked snippets.
    pub fn load(name: &str) -> Doc {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut doc = Doc {
            path,
            ..Doc::default()
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim();
            i += 1;
            let Some(marker) = line
                .strip_prefix("<!-- guide-")
                .and_then(|m| m.strip_suffix("-->"))
            else {
                continue;
            };
            let (kind, name) = marker
                .split_once(':')
                .unwrap_or_else(|| panic!("{}:{i}: bad marker {line:?}", doc.path.display()));
            let (kind, name) = (kind.trim(), name.trim().to_string());
            while i < lines.len() && lines[i].trim().is_empty() {
                i += 1;
            }
            assert!(
                i < lines.len() && lines[i].trim_start().starts_with("```"),
                "{}:{i}: marker {line:?} must be followed by a fenced block",
                doc.path.display()
            );
            i += 1;
            let mut body = Vec::new();
            while i < lines.len() && !lines[i].trim_start().starts_with("```") {
                body.push(lines[i]);
                i += 1;
            }
            i += 1;
            let duplicate = match kind {
                "step" => doc
                    .steps
                    .insert(name.clone(), join_command(&body))
                    .is_some(),
                "file" => {
                    let mut content = body.join("\n");
                    content.push('\n');
                    doc.files.insert(name.clone(), content).is_some()
                }
                "output" => doc
                    .outputs
                    .insert(
                        name.clone(),
                        body.iter()
                            .map(|l| l.to_string())
                            .filter(|l| !l.trim().is_empty())
                            .collect(),
                    )
                    .is_some(),
                other => panic!("{}: unknown marker kind {other:?}", doc.path.display()),
            };
            assert!(
                !duplicate,
                "{}: {kind} {name:?} is marked twice",
                doc.path.display()
            );
        }
        doc
    }

    /// The command of step `name`, as written in the doc.
    pub fn step(&self, name: &str) -> &str {
        self.steps.get(name).unwrap_or_else(|| {
            panic!(
                "{} has no `<!-- guide-step: {name} -->` snippet",
                self.path.display()
            )
        })
    }
}

/// One command from a `sh` block: comment lines dropped, `\` continuations joined.
fn join_command(body: &[&str]) -> String {
    let mut out = String::new();
    let mut complete = false;
    for line in body {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        assert!(!complete, "a guide-step block holds one command: {body:?}");
        let (part, continued) = match t.strip_suffix('\\') {
            Some(p) => (p.trim_end(), true),
            None => (t, false),
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(part);
        complete = !continued;
    }
    out
}

/// Splits a command line like a POSIX shell does for the simple commands the
/// docs use: words, '...' and "..." quoting. No variables, globs or pipes.
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                assert!(
                    !matches!(c, '|' | '&' | ';' | '<' | '>' | '$' | '`' | '*'),
                    "guide commands are simple commands; {c:?} in {line:?} is not supported"
                );
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Replaces `from` by `to` where `from` is not part of a longer number or
/// address (no digit or `.`+digit next to it).
pub fn replace_token(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(from) {
        let before = rest[..pos].chars().next_back();
        let mut following = rest[pos + from.len()..].chars();
        let glued_before = before.is_some_and(|c| c.is_ascii_digit() || c == '.');
        // A digit, or `.` and a digit, continue the number or address;
        // `8883.` at the end of a sentence is still the port.
        let after_glued = match following.next() {
            Some(c) if c.is_ascii_digit() => true,
            Some('.') => following.next().is_some_and(|c| c.is_ascii_digit()),
            _ => false,
        };
        out.push_str(&rest[..pos]);
        if glued_before || after_glued {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[pos + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Normalises a line of output for comparison with a doc's output block:
/// no ANSI colours, no leading `1700000000:` timestamp, every run of digits
/// as `N` (ports, process ids, timestamps and addresses vary from run to
/// run), Mosquitto's random `auto-…` client ids as `auto-ID`.
pub fn normalise(line: &str) -> String {
    let mut plain = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let mut s = plain.trim();
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 && s[digits..].starts_with(':') {
        s = s[digits + 1..].trim_start();
    }
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("auto-") {
            let n = tail.len()
                - tail
                    .trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '-')
                    .len();
            if n > 0 {
                out.push_str("auto-ID");
                rest = &tail[n..];
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_ascii_digit() {
            out.push('N');
            rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Lines of `expected` (a doc's output block) that `actual` lacks.
pub fn missing_lines(expected: &[String], actual: &str) -> Vec<String> {
    let actual: Vec<String> = actual.lines().map(normalise).collect();
    expected
        .iter()
        .filter(|e| {
            let e = normalise(e);
            !actual.iter().any(|a| a.contains(&e))
        })
        .cloned()
        .collect()
}

/// Output collected from a child's stdout and stderr.
#[derive(Default)]
struct Output {
    stdout: String,
    all: String,
}

/// A child process started from a guide command; killed when dropped.
pub struct Proc {
    pub name: String,
    pub command: String,
    child: Child,
    output: Arc<Mutex<Output>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `program args` in `dir`.
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("step {name}: cannot start {}: {e}", program.display()));
        let output = Arc::new(Mutex::new(Output::default()));
        let mut readers = Vec::new();
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for (stream, is_stdout) in [(stdout, true), (stderr, false)] {
            let Some(mut stream) = stream else { continue };
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    // Only whole UTF-8 sequences; keep a split one for later.
                    let valid = match std::str::from_utf8(&pending) {
                        Ok(s) => s.len(),
                        Err(e) if e.error_len().is_none() => e.valid_up_to(),
                        Err(_) => pending.len(),
                    };
                    let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
                    pending.drain(..valid);
                    let mut o = output.lock().unwrap_or_else(|p| p.into_inner());
                    if is_stdout {
                        o.stdout.push_str(&text);
                    }
                    o.all.push_str(&text);
                }
            }));
        }
        let command = std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        Proc {
            name: name.to_string(),
            command,
            child,
            output,
            readers,
        }
    }

    /// Everything printed so far (stdout and stderr, in arrival order per stream).
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .all
            .clone()
    }

    /// Standard output so far.
    pub fn stdout(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stdout
            .clone()
    }

    /// Polls until `pred(output)` holds; panics with the output at the deadline
    /// or when the process exits first.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.output()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers drain what the process printed last.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                if pred(&self.output()) {
                    return;
                }
                panic!(
                    "step {}: exited with {status} before {what}\ncommand: {}\noutput:\n{}",
                    self.name,
                    self.command,
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "step {}: no {what} within {timeout:?}\ncommand: {}\noutput:\n{}",
                    self.name,
                    self.command,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the output contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_until(&format!("{needle:?} in the output"), timeout, |o| {
            o.contains(needle)
        });
    }

    /// Waits for the process to exit; kills it and panics at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "step {}: still running after {timeout:?}\ncommand: {}\noutput:\n{}",
                    self.name,
                    self.command,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        if std::env::var_os("GUIDE_SHOW_OUTPUT").is_some() {
            println!(
                "----- step {}\n$ {}\n{}",
                self.name,
                self.command,
                self.output()
            );
        }
    }
}
