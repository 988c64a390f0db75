//! Writes a CA, a server certificate and client certificates in one command.
//!
//! ```text
//! cargo run --example gen-certs -- --out certs --server-name 192.168.1.5 --server-name laptop.local --client-name sensor-1
//! # re-issue the server certificate from an existing CA (the Pi keeps its ca.crt):
//! cargo run --example gen-certs -- --out certs --ca-cert ca.crt --ca-key ca.key --server-name 192.168.1.5
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mqtt_tls::gen::{write_set, CertificateAuthority};

/// Generate ca.crt, ca.key, server.crt, server.key, client.crt and client.key
/// (keys mode 0600) for a TLS MQTT broker and its clients.
#[derive(Debug, Parser)]
#[command(name = "gen-certs")]
struct Args {
    /// Directory to write the files into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// A name the server is reached by: an IP address or a DNS name. Repeat for each.
    #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    server_names: Vec<String>,
    /// A client certificate's Common Name (its username under
    /// use_identity_as_username). The first goes to client.crt, others to NAME.crt.
    #[arg(long = "client-name", default_values_t = ["client".to_string()])]
    client_names: Vec<String>,
    /// Existing CA certificate to issue from (keeps the ca.crt already on your devices).
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The existing CA's private key (unencrypted).
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
}

fn run(args: &Args) -> Result<(), mqtt_tls::TlsError> {
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => CertificateAuthority::from_pem_files(cert, key)?,
        _ => CertificateAuthority::generate()?,
    };
    let server = ca.issue_server(&args.server_names)?;
    let mut clients = Vec::new();
    for name in &args.client_names {
        clients.push((name.clone(), ca.issue_client(name)?));
    }
    let written = write_set(&args.out, &ca, &server, &clients)?;
    for file in &written.files {
        println!("wrote {}", file.display());
    }
    if ca.is_generated() {
        println!(
            "new CA: copy ca.crt to every broker and client; keep ca.key private (re-issue later with --ca-cert {0}/ca.crt --ca-key {0}/ca.key)",
            args.out.display()
        );
    } else {
        println!("issued from the existing CA; ca.crt is unchanged, so devices that have it need nothing new");
    }
    println!("server certificate names: {}", args.server_names.join(", "));
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-certs: {e}");
            ExitCode::FAILURE
        }
    }
}
