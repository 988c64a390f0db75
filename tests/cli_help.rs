//! `pi-subscriber --help` and `publisher --help`: mosquitto_sub's and
//! mosquitto_pub's layout, every flag the parser takes listed (the list is
//! read from clap's `Command`, so a new flag without help fails here), in
//! mosquitto's order; and the flag rules that need no broker.

// Each example includes examples/common/client_cli.rs as its own module,
// as the examples are separate crates; here they share one crate.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/common/client_cli.rs"]
mod client_cli;
#[path = "support/examples.rs"]
mod examples;
#[allow(dead_code)]
#[path = "../examples/pi-subscriber.rs"]
mod pi_subscriber;
#[allow(dead_code)]
#[path = "../examples/publisher.rs"]
mod publisher;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use clap::CommandFactory;

/// Every spelling the parser accepts: `-x` and `--long`, aliases included.
fn accepted(cmd: &clap::Command) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for arg in cmd.get_arguments() {
        assert!(
            arg.get_short().is_some() || arg.get_long().is_some(),
            "{}: positional arguments are not mosquitto's",
            arg.get_id()
        );
        for s in arg.get_short_and_visible_aliases().into_iter().flatten() {
            flags.insert(format!("-{s}"));
        }
        for l in arg.get_long_and_visible_aliases().into_iter().flatten() {
            flags.insert(format!("--{l}"));
        }
        // Hidden aliases would be accepted but unlisted.
        assert_eq!(
            arg.get_all_short_aliases().unwrap_or_default().len()
                + arg.get_all_aliases().unwrap_or_default().len(),
            arg.get_visible_short_aliases().unwrap_or_default().len()
                + arg.get_visible_aliases().unwrap_or_default().len(),
            "{}",
            arg.get_id()
        );
    }
    flags
}

/// The option list of a mosquitto-style help: one entry per ` FLAGS : text`
/// line, its flags split at ", " (mosquitto writes one flag per entry).
fn entries(help: &str) -> Vec<Vec<String>> {
    help.lines()
        .filter(|l| l.starts_with(" -"))
        .filter_map(|l| l.split_once(" : "))
        .map(|(label, _)| label.trim().split(", ").map(str::to_string).collect())
        .collect()
}

/// The flags named in the `Usage:` block, in order, each once.
fn usage_flags(help: &str) -> Vec<String> {
    let start = help.find("Usage:").expect("a Usage: block");
    let block = &help[start..];
    let block = &block[..block.find("\n\n").unwrap_or(block.len())];
    let mut out: Vec<String> = Vec::new();
    for word in block.split(|c: char| c.is_whitespace() || "[]{}|".contains(c)) {
        let flag = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        let is_flag = flag.starts_with('-')
            && flag.len() > 1
            && flag[1..]
                .trim_start_matches('-')
                .starts_with(|c: char| c.is_ascii_alphabetic());
        if is_flag && !out.iter().any(|f| f == flag) {
            out.push(flag.to_string());
        }
    }
    out
}

/// What `--help` prints: the error clap returns for it, rendered.
fn printed_help<A: CommandFactory>(name: &str) -> String {
    let err = A::command()
        .try_get_matches_from([name, "--help"])
        .expect_err("--help stops parsing");
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    assert!(!err.use_stderr(), "--help goes to standard output");
    err.to_string()
}

fn check_lists_every_flag<A: CommandFactory>(name: &str, help: &str) {
    let cmd = A::command();
    let listed: Vec<String> = entries(help).into_iter().flatten().collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "{name}: a flag listed twice");
    assert_eq!(
        unique,
        accepted(&cmd),
        "{name}: the option list and the parser disagree"
    );
    // An entry lists one argument's spellings, short first.
    for arg in cmd.get_arguments() {
        let mut label = Vec::new();
        label.extend(arg.get_short().map(|s| format!("-{s}")));
        label.extend(arg.get_long().map(|l| format!("--{l}")));
        assert!(
            entries(help).contains(&label),
            "{name}: no entry {label:?} for {}",
            arg.get_id()
        );
    }
    // The usage lines name only flags the parser takes.
    for flag in usage_flags(help) {
        assert!(
            unique.contains(&flag),
            "{name}: usage names {flag}, which the parser does not take"
        );
    }
}

#[test]
fn pi_subscriber_help_lists_every_flag_the_parser_takes() {
    let help = printed_help::<pi_subscriber::Args>("pi-subscriber");
    assert_eq!(help, pi_subscriber::help());
    check_lists_every_flag::<pi_subscriber::Args>("pi-subscriber", &help);
}

#[test]
fn publisher_help_lists_every_flag_the_parser_takes() {
    let help = printed_help::<publisher::Args>("publisher");
    assert_eq!(help, publisher::help());
    check_lists_every_flag::<publisher::Args>("publisher", &help);
}

/// `mosquitto_sub --help` (or pub), or `None` with the reason printed when
/// it is not installed; under `MQTT_INTEROP=1` a missing tool fails.
fn mosquitto_help(tool: &str) -> Option<String> {
    let path = format!("/usr/bin/{tool}");
    if !Path::new(&path).exists() {
        if std::env::var("MQTT_INTEROP").is_ok_and(|v| v == "1") {
            panic!("{path} is missing and MQTT_INTEROP=1 requires it");
        }
        eprintln!("SKIPPED: {path} is not installed");
        return None;
    }
    let out = Command::new(&path).arg("--help").output().unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ours` and `theirs` restricted to what both have, in their own orders.
fn common_order(ours: &[String], theirs: &[String]) -> (Vec<String>, Vec<String>) {
    let a = ours
        .iter()
        .filter(|f| theirs.contains(f))
        .cloned()
        .collect();
    let b = theirs
        .iter()
        .filter(|f| ours.contains(f))
        .cloned()
        .collect();
    (a, b)
}

fn check_mosquitto_order(name: &str, tool: &str, ours: &str) {
    let Some(theirs) = mosquitto_help(tool) else {
        return;
    };
    // The first line, with our name.
    let first = theirs.lines().next().unwrap().replacen(tool, name, 1);
    assert_eq!(ours.lines().next().unwrap(), first, "{name}: first line");
    // The option list: entries in mosquitto's order, keyed by the flag
    // mosquitto writes (ours adds the long form after it).
    let key = |e: &Vec<String>| e[0].clone();
    let our_keys: Vec<String> = entries(ours).iter().map(key).collect();
    let their_keys: Vec<String> = entries(&theirs).iter().map(key).collect();
    assert!(their_keys.len() > 30, "{tool} --help: {theirs}");
    let (a, b) = common_order(&our_keys, &their_keys);
    assert_eq!(a, b, "{name}: option list order differs from {tool}'s");
    // Every entry of ours is one of mosquitto's (no invented flag has an
    // entry of its own).
    for k in &our_keys {
        assert!(
            their_keys.contains(k),
            "{name}: {k} is not in {tool}'s list"
        );
    }
    // Flags we do not take are mentioned only if mosquitto lists them.
    let not_taken = ours
        .split_once("does not take:")
        .map(|(_, rest)| rest.split("\n\n").next().unwrap_or(""))
        .unwrap_or("");
    let their_usage = usage_flags(&theirs);
    let mut mentioned = 0;
    for flag in not_taken
        .split([',', ' ', '\n', '.'])
        .filter(|f| !f.is_empty())
    {
        assert!(
            their_keys.iter().chain(&their_usage).any(|k| k == flag),
            "{name}: mentions {flag}, which {tool} does not"
        );
        assert!(
            !our_keys.iter().any(|k| k == flag),
            "{name}: says it does not take {flag}, but lists it"
        );
        mentioned += 1;
    }
    assert!(mentioned > 5, "{name}: the flags it does not take");
    // And the usage lines.
    let (a, b) = common_order(&usage_flags(ours), &usage_flags(&theirs));
    assert_eq!(a, b, "{name}: usage order differs from {tool}'s");
}

#[test]
fn pi_subscriber_help_follows_mosquitto_subs_order() {
    check_mosquitto_order("pi-subscriber", "mosquitto_sub", &pi_subscriber::help());
}

#[test]
fn publisher_help_follows_mosquitto_pubs_order() {
    check_mosquitto_order("publisher", "mosquitto_pub", &publisher::help());
}

#[test]
fn session_expiry_takes_mosquittos_never_values() {
    let parse = |v: &str| {
        pi_subscriber::Args::command()
            .try_get_matches_from(["pi-subscriber", "-t", "t", "-x", v])
            .map(|m| *m.get_one::<u32>("session_expiry").unwrap())
            .map_err(|e| e.to_string())
    };
    assert_eq!(parse("-1"), Ok(u32::MAX));
    assert_eq!(parse("\u{221e}"), Ok(u32::MAX));
    assert_eq!(parse("4294967295"), Ok(u32::MAX));
    assert_eq!(parse("30"), Ok(30));
    assert!(parse("-2").unwrap_err().contains("out of range"));
    assert!(parse("4294967296").unwrap_err().contains("out of range"));
    assert!(parse("soon").unwrap_err().contains("not a number"));
}

#[test]
fn default_ports_are_mosquittos() {
    let tls = |cafile: bool, os_certs: bool| client_cli::TlsArgs {
        cafile: cafile.then(|| "ca.crt".into()),
        capath: None,
        cert: None,
        key: None,
        insecure: false,
        tls_version: None,
        tls_use_os_certs: os_certs,
    };
    assert_eq!(tls(false, false).default_port(), 1883);
    assert_eq!(tls(true, false).default_port(), 8883);
    // mosquitto_sub 2.0.11 picks 8883 only for --cafile/--capath.
    assert_eq!(tls(false, true).default_port(), 1883);
    assert!(tls(false, true).enabled());
    let url = client_cli::parse_url("mqtts://127.0.0.1/t").unwrap();
    assert_eq!((url.tls, url.port), (true, 8883));
    let url = client_cli::parse_url("mqtt://127.0.0.1/t").unwrap();
    assert_eq!((url.tls, url.port), (false, 1883));
    let url = client_cli::parse_url("MQTTS://u:p@127.0.0.1:4567/a/b").unwrap();
    assert_eq!(
        (
            url.tls,
            url.port,
            url.topic.as_str(),
            url.username.as_deref()
        ),
        (true, 4567, "a/b", Some("u"))
    );
}

#[test]
fn a_property_means_mqtt_5_unless_a_later_v_says_otherwise() {
    let argv = |a: &[&str]| -> Vec<std::ffi::OsString> { a.iter().map(Into::into).collect() };
    let implies = |a: &[&str]| client_cli::property_implies_v5(&argv(a));
    assert!(!implies(&["publisher", "-t", "t", "-m", "x"]));
    assert!(implies(&[
        "publisher",
        "-D",
        "publish",
        "content-type",
        "t"
    ]));
    assert!(implies(&[
        "publisher",
        "-V",
        "311",
        "-D",
        "publish",
        "content-type",
        "t"
    ]));
    assert!(!implies(&[
        "publisher",
        "-D",
        "publish",
        "content-type",
        "t",
        "-V",
        "311"
    ]));
    assert!(!implies(&[
        "publisher",
        "--property",
        "publish",
        "content-type",
        "t",
        "--protocol-version=mqttv31"
    ]));
    assert!(!implies(&[
        "publisher",
        "-D",
        "publish",
        "content-type",
        "t",
        "-Vmqttv311"
    ]));
}

#[test]
fn help_exits_with_mosquittos_code_and_prints_to_stdout() {
    for (ours, theirs) in [
        ("pi-subscriber", "mosquitto_sub"),
        ("publisher", "mosquitto_pub"),
    ] {
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join(ours);
        assert!(bin.is_file(), "{} is built by cargo test", bin.display());
        let out = Command::new(&bin).arg("--help").output().unwrap();
        assert!(out.stderr.is_empty());
        assert!(!out.stdout.is_empty());
        let Some(_) = mosquitto_help(theirs) else {
            continue;
        };
        let theirs = Command::new(format!("/usr/bin/{theirs}"))
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), theirs.status.code(), "{ours}");
    }
}

/// The load tools' command lines are well formed: their `--help` works in a
/// debug build, where clap checks the command (two flags on one short
/// option, such as `-V` for both the MQTT version and `--version`, stop
/// the tool before it parses anything).
#[test]
fn the_load_tools_print_their_help() {
    for tool in ["mqtt-bench", "mqtt-swarm", "mqtt-soak"] {
        let out = Command::new(examples::example(tool))
            .arg("--help")
            .output()
            .expect("the tool runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Usage"),
            "{tool} --help: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
