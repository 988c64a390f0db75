//! Certificates made the way Mosquitto's documentation says (mosquitto-tls),
//! with the openssl command line. OpenSSL 3.0 writes version 1 leaf
//! certificates whose only name is the Common Name; rustls refuses them, and
//! the errors must say so and give the gen-certs command.

mod common;

use std::path::Path;

use common::*;
use mqtt_tls::gen::CertificateAuthority;
use mqtt_tls::{ClientTlsOptions, ServerTlsOptions, TlsError};

/// The recipe: a v3_ca CA, then `openssl x509 -req` for the server (CN=127.0.0.1)
/// and the client. The CA key is left unencrypted (the recipe's `-des3` would
/// prompt for a passphrase).
fn recipe(dir: &Path) {
    run(
        dir,
        "openssl",
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-extensions",
            "v3_ca",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=recipe CA",
        ],
    );
    for (name, cn) in [("server", "127.0.0.1"), ("client", "sensor-1")] {
        run(
            dir,
            "openssl",
            &["genrsa", "-out", &format!("{name}.key"), "2048"],
        );
        run(
            dir,
            "openssl",
            &[
                "req",
                "-new",
                "-out",
                &format!("{name}.csr"),
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        run(
            dir,
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "365",
            ],
        );
    }
}

fn recipe_dir() -> Option<tempfile::TempDir> {
    if !tool_available("openssl") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "server.crt"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"),
        "this openssl writes version 3 certificates with the recipe; the test expects OpenSSL 3.0's version 1"
    );
    Some(dir)
}

#[test]
fn recipe_server_certificate_is_refused_with_version_1_explanation_and_fix() {
    let Some(dir) = recipe_dir() else { return };
    let err = ServerTlsOptions {
        cafile: Some(dir.path().join("ca.crt")),
        require_certificate: true,
        ..ServerTlsOptions::new(dir.path().join("server.crt"), dir.path().join("server.key"))
    }
    .build()
    .unwrap_err();
    assert!(
        matches!(err, TlsError::Version1Certificate { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "certfile {} is a version 1 certificate (CN=127.0.0.1)",
            dir.path().join("server.crt").display()
        )),
        "{msg}"
    );
    assert!(msg.contains("name is only in the Common Name"), "{msg}");
    assert!(msg.contains("keeping ca.crt"), "{msg}");
    assert!(
        msg.ends_with("cargo run --example gen-certs -- --out DIR --ca-cert ca.crt --ca-key ca.key --server-name 127.0.0.1"),
        "{msg}"
    );
}

#[test]
fn recipe_client_certificate_is_refused_with_version_1_explanation_and_fix() {
    let Some(dir) = recipe_dir() else { return };
    let err = ClientTlsOptions::new()
        .cafile(dir.path().join("ca.crt"))
        .certfile(dir.path().join("client.crt"))
        .keyfile(dir.path().join("client.key"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, TlsError::Version1Certificate { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("is a version 1 certificate (CN=sensor-1)"),
        "{err}"
    );
    assert!(err.to_string().ends_with("--client-name sensor-1"), "{err}");
}

#[test]
fn recipe_ca_loads_as_cafile() {
    let Some(dir) = recipe_dir() else { return };
    let set = Set::new(&["127.0.0.1"]);
    ServerTlsOptions {
        cafile: Some(dir.path().join("ca.crt")),
        require_certificate: true,
        ..ServerTlsOptions::new(set.path("server.crt"), set.path("server.key"))
    }
    .build()
    .unwrap();
}

#[tokio::test]
async fn reissuing_from_the_recipe_ca_works_with_the_existing_ca_crt() {
    let Some(dir) = recipe_dir() else { return };
    let ca = CertificateAuthority::from_pem_files(
        &dir.path().join("ca.crt"),
        &dir.path().join("ca.key"),
    )
    .unwrap();
    let server = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let client = ca.issue_client("sensor-1").unwrap();
    let out = tempfile::tempdir().unwrap();
    mqtt_tls::gen::write_set(
        out.path(),
        &ca,
        &server,
        &[("sensor-1".to_string(), client)],
    )
    .unwrap();
    // ca.crt is copied unchanged; the CA key is not copied.
    assert_eq!(
        std::fs::read(dir.path().join("ca.crt")).unwrap(),
        std::fs::read(out.path().join("ca.crt")).unwrap()
    );
    assert!(!out.path().join("ca.key").exists());

    let broker = ServerTlsOptions {
        cafile: Some(dir.path().join("ca.crt")),
        require_certificate: true,
        ..ServerTlsOptions::new(out.path().join("server.crt"), out.path().join("server.key"))
    }
    .build()
    .unwrap();
    let client = ClientTlsOptions::new()
        .cafile(dir.path().join("ca.crt"))
        .certfile(out.path().join("client.crt"))
        .keyfile(out.path().join("client.key"))
        .build()
        .unwrap();
    let (addr, handle) = serve_once("127.0.0.1", broker, true).await;
    dial(client, "127.0.0.1", addr).await.unwrap();
    within(handle).await.unwrap().unwrap();
    // And OpenSSL agrees.
    run(
        out.path(),
        "openssl",
        &[
            "verify",
            "-CAfile",
            &dir.path().join("ca.crt").display().to_string(),
            "server.crt",
            "client.crt",
        ],
    );
}

#[test]
fn pkcs1_ca_key_from_older_openssl_can_reissue() {
    if !tool_available("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        "openssl",
        &["genrsa", "-traditional", "-out", "ca.key", "2048"],
    );
    run(
        dir.path(),
        "openssl",
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "365",
            "-extensions",
            "v3_ca",
            "-key",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=old CA",
        ],
    );
    assert!(std::fs::read_to_string(dir.path().join("ca.key"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    let ca = CertificateAuthority::from_pem_files(
        &dir.path().join("ca.crt"),
        &dir.path().join("ca.key"),
    )
    .unwrap();
    let server = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let (crt, key) = (dir.path().join("s.crt"), dir.path().join("s.key"));
    server.write(&crt, &key).unwrap();
    run(
        dir.path(),
        "openssl",
        &["verify", "-CAfile", "ca.crt", "s.crt"],
    );
}

#[test]
fn openssl_rsa_and_ec_key_formats_load() {
    if !tool_available("openssl") {
        return;
    }
    let set = Set::new(&["127.0.0.1"]);
    let dir = set.dir.path();
    // PKCS#1 (traditional RSA) and SEC1 (EC) keys for certificates issued by our CA via CSR are
    // not needed: check that the key loaders accept every format against a matching cert.
    for (args, marker) in [
        (
            vec!["genrsa", "-traditional", "-out", "k1.key", "2048"],
            "BEGIN RSA PRIVATE KEY",
        ),
        (
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "k2.key",
            ],
            "BEGIN EC PRIVATE KEY",
        ),
        (
            vec!["genpkey", "-algorithm", "RSA", "-out", "k3.key"],
            "BEGIN PRIVATE KEY",
        ),
    ] {
        run(dir, "openssl", &args);
        let key_name = args
            .iter()
            .position(|a| *a == "-out")
            .map(|i| args[i + 1])
            .unwrap();
        assert!(std::fs::read_to_string(dir.join(key_name))
            .unwrap()
            .contains(marker));
        // Self-signed v3 certificate with a SAN for this key.
        let crt = format!("{key_name}.crt");
        run(
            dir,
            "openssl",
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                key_name,
                "-out",
                &crt,
                "-days",
                "30",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
        );
        ServerTlsOptions::new(dir.join(&crt), dir.join(key_name))
            .build()
            .unwrap_or_else(|e| panic!("{key_name}: {e}"));
    }
}

#[test]
fn encrypted_private_keys_get_a_precise_message() {
    if !tool_available("openssl") {
        return;
    }
    let set = Set::new(&["127.0.0.1"]);
    let dir = set.dir.path();
    run(
        dir,
        "openssl",
        &[
            "genrsa",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "enc.key",
            "2048",
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "genrsa",
            "-traditional",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "enc-trad.key",
            "2048",
        ],
    );
    for key in ["enc.key", "enc-trad.key"] {
        let err = ServerTlsOptions::new(set.path("server.crt"), set.path(key))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, TlsError::EncryptedPrivateKey { .. }),
            "{key}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "keyfile {} holds an encrypted private key",
                set.path(key).display()
            )),
            "{msg}"
        );
        assert!(msg.contains("openssl pkey -in"), "{msg}");
    }
}
