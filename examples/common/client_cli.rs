//! What `pi-subscriber` and `publisher` share: Mosquitto's TLS flags, `-V`,
//! and how errors are printed and turned into exit codes.

use mqtt_client::{ClientTlsOptions, Error, ProtocolVersion};
use std::path::PathBuf;
use std::process::ExitCode;

/// `--cafile --capath --cert --key --insecure`, as mosquitto_sub/pub take them.
#[derive(clap::Args, Debug, Clone)]
pub struct TlsArgs {
    /// CA certificates to verify the broker with (turns TLS on).
    #[arg(long)]
    pub cafile: Option<PathBuf>,
    /// Directory of CA certificates (turns TLS on).
    #[arg(long)]
    pub capath: Option<PathBuf>,
    /// Client certificate (needs --key and --cafile/--capath).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// Client private key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Do not check that the broker's certificate names the host dialled.
    #[arg(long)]
    pub insecure: bool,
}

impl TlsArgs {
    /// Whether any TLS flag was given (then the default port is 8883).
    pub fn enabled(&self) -> bool {
        self.cafile.is_some()
            || self.capath.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.insecure
    }

    /// The mqtt-tls options; mqtt-tls refuses --cert without --cafile/--capath,
    /// saying what to add, so nothing silently falls back to plain TCP.
    pub fn options(&self) -> ClientTlsOptions {
        ClientTlsOptions {
            cafile: self.cafile.clone(),
            capath: self.capath.clone(),
            certfile: self.cert.clone(),
            keyfile: self.key.clone(),
            insecure: self.insecure,
            ..ClientTlsOptions::default()
        }
    }
}

/// `-V`: mqttv311 (311), mqttv5 (5) or mqttv31 (31), as mosquitto_sub.
pub fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "mqttv311" | "311" => Ok(ProtocolVersion::V3_1_1),
        "mqttv5" | "5" => Ok(ProtocolVersion::V5),
        "mqttv31" | "31" => Ok(ProtocolVersion::V3_1),
        _ => Err(format!(
            "invalid protocol version {s:?}; use mqttv311 (311), mqttv5 (5) or mqttv31 (31)"
        )),
    }
}

/// The exit code mosquitto_sub/mosquitto_pub use for an error: the CONNACK
/// code for a refusal, 1 otherwise.
pub fn exit_code(err: &Error, version: ProtocolVersion) -> ExitCode {
    match err.connack_refusal() {
        Some(rc) if version.is_v5() => ExitCode::from(rc.as_u8()),
        Some(rc) => ExitCode::from(rc.to_v3_connack()),
        None => ExitCode::from(1),
    }
}

/// Prints an error the way Mosquitto's clients do, with our explanation.
pub fn report(err: &Error) {
    if err.connack_refusal().is_some() {
        eprintln!("Connection error: {err}");
    } else {
        eprintln!("Error: {err}");
    }
}

/// Parses the flags and runs `run` on a current-thread runtime, with
/// Mosquitto's exit code 1 for a usage error (clap would use 2).
pub fn main_with<A, F>(run: impl FnOnce(A) -> F) -> ExitCode
where
    A: clap::Parser,
    F: std::future::Future<Output = ExitCode>,
{
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::from(e.use_stderr()));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args))
}
