//! Checks a certificate set offline, before anyone starts a broker: chain,
//! key match, names covered, key usages, validity, version.
//!
//! ```text
//! cargo run --example tls-check -- --cafile ca.crt --cert server.crt --key server.key --name 192.168.1.5
//! cargo run --example tls-check -- --cafile ca.crt --cert client.crt --key client.key
//! ```
//! Exits 1 when any check fails.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mqtt_tls::check::{check, has_errors, CheckOptions};

/// Report everything that is wrong with a set of TLS files.
#[derive(Debug, Parser)]
#[command(name = "tls-check")]
struct Args {
    /// The CA certificate (Mosquitto's cafile).
    #[arg(long)]
    cafile: Option<PathBuf>,
    /// The server or client certificate (certfile / --cert).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Its private key (keyfile / --key).
    #[arg(long)]
    key: Option<PathBuf>,
    /// An address clients dial (-h); repeat for each. Makes this a server check.
    #[arg(long = "name")]
    names: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let findings = check(&CheckOptions {
        cafile: args.cafile,
        certfile: args.cert,
        keyfile: args.key,
        names: args.names,
    });
    for finding in &findings {
        println!("{finding}");
    }
    if has_errors(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
