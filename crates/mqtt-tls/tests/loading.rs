//! Loading errors: each names the file and says what to do.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::*;
use mqtt_tls::gen::CertificateAuthority;
use mqtt_tls::{ReloadableServerConfig, ServerTlsOptions, TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn missing_certfile_names_the_file() {
    let set = Set::new(&["127.0.0.1"]);
    let options = ServerTlsOptions::new(set.path("nope.crt"), set.path("server.key"));
    let err = options.build().unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::FileMissing {
                what: "certfile",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "certfile {} does not exist",
            set.path("nope.crt").display()
        )),
        "{err}"
    );
}

#[test]
fn unreadable_keyfile_names_the_uid_owner_and_mode() {
    let set = Set::new(&["127.0.0.1"]);
    // A directory cannot be read as a file, even by root.
    let dir_as_key = set.path("keydir");
    std::fs::create_dir(&dir_as_key).unwrap();
    std::fs::set_permissions(&dir_as_key, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = ServerTlsOptions::new(set.path("server.crt"), &dir_as_key)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::FileUnreadable {
                what: "keyfile",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    let uid = std::fs::metadata(set.path("server.crt")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    assert!(
        msg.starts_with(&format!("cannot read keyfile {}", dir_as_key.display())),
        "{msg}"
    );
    assert!(msg.contains("this process runs as uid "), "{msg}");
    assert!(
        msg.contains(&format!(
            "the file is owned by uid {} with mode 0700",
            uid.unwrap()
        )),
        "{msg}"
    );
}

#[test]
fn certfile_holding_a_key_says_the_files_are_swapped() {
    let set = Set::new(&["127.0.0.1"]);
    let err = ServerTlsOptions::new(set.path("server.key"), set.path("server.key"))
        .build()
        .unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("contains no certificate"), "{err}");
    assert!(
        err.to_string()
            .contains("are certfile and keyfile swapped?"),
        "{err}"
    );
}

#[test]
fn keyfile_without_a_key_names_the_file() {
    let set = Set::new(&["127.0.0.1"]);
    let err = ServerTlsOptions::new(set.path("server.crt"), set.path("server.crt"))
        .build()
        .unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "keyfile {} contains no private key",
            set.path("server.crt").display()
        )),
        "{err}"
    );
}

#[test]
fn key_that_does_not_match_the_certificate_names_both_files() {
    let set = Set::new(&["127.0.0.1"]);
    let err = ServerTlsOptions::new(set.path("server.crt"), set.path("client.key"))
        .build()
        .unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "keyfile {} does not match certfile {}",
            set.path("client.key").display(),
            set.path("server.crt").display()
        )),
        "{err}"
    );
    let client_err = {
        let mut tls = set.client_options(true);
        tls.keyfile = Some(set.path("server.key"));
        tls
    }
    .build()
    .unwrap_err();
    assert!(
        matches!(client_err, TlsError::KeyMismatch { .. }),
        "{client_err:?}"
    );
}

#[test]
fn client_certificate_without_a_trust_source_says_what_to_add() {
    let set = Set::new(&["127.0.0.1"]);
    let err = {
        let mut tls = set.client_options(true);
        tls.cafile = None;
        tls
    }
    .build()
    .unwrap_err();
    assert!(matches!(err, TlsError::NoTrustSource { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&set.path("client.crt").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("set `ClientTlsOptions::cafile` to ca.crt"),
        "{msg}"
    );
    // The public-CA alternative names the option too: a library message
    // names options, never a command line's flags.
    assert!(
        msg.contains("`ClientTlsOptions::use_webpki_roots`"),
        "{msg}"
    );
    assert!(!msg.contains("--"), "{msg}");

    let err = {
        let mut tls = set.client_options(true);
        tls.cafile = None;
        tls.certfile = None;
        tls.keyfile = None;
        tls
    }
    .build()
    .unwrap_err();
    assert!(matches!(err, TlsError::NoTrustAnchors), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`ClientTlsOptions::cafile` to ca.crt")
            && msg.contains("`ClientTlsOptions::capath` to a directory"),
        "{msg}"
    );
    assert!(msg.contains("ClientTlsOptions::use_webpki_roots"), "{msg}");
}

#[test]
fn certificate_without_key_is_refused() {
    let set = Set::new(&["127.0.0.1"]);
    let err = {
        let mut tls = set.client_options(true);
        tls.keyfile = None;
        tls
    }
    .build()
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("was given without `ClientTlsOptions::keyfile`"),
        "{err}"
    );
}

#[test]
fn webpki_roots_alone_are_a_trust_source() {
    let set = Set::new(&["127.0.0.1"]);
    {
        let mut tls = set.client_options(true);
        tls.cafile = None;
        tls.use_webpki_roots = true;
        tls
    }
    .build()
    .unwrap();
}

#[test]
fn require_certificate_without_a_ca_is_refused() {
    let set = Set::new(&["127.0.0.1"]);
    let err = ServerTlsOptions {
        cafile: None,
        ..set.server_options(true)
    }
    .build()
    .unwrap_err();
    assert!(
        matches!(err, TlsError::RequireCertificateWithoutCa),
        "{err:?}"
    );
    assert!(err.to_string().contains("add `cafile ca.crt`"), "{err}");
}

#[test]
fn server_certificate_with_its_name_only_in_the_common_name_is_explained() {
    let set = Set::new(&["127.0.0.1"]);
    // rcgen with no SAN, CN only.
    let dir = tempfile::tempdir().unwrap();
    let ca =
        CertificateAuthority::from_pem_files(&set.path("ca.crt"), &set.path("ca.key")).unwrap();
    let client_like = ca.issue_client("192.168.1.5").unwrap();
    let (crt, key) = (dir.path().join("cn.crt"), dir.path().join("cn.key"));
    client_like.write(&crt, &key).unwrap();
    let err = ServerTlsOptions::new(&crt, &key).build().unwrap_err();
    assert!(
        matches!(err, TlsError::NameOnlyInCommonName { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("has its name only in the Common Name (CN=192.168.1.5)"),
        "{msg}"
    );
    assert!(
        msg.contains("--ca-cert ca.crt --ca-key ca.key --server-name 192.168.1.5"),
        "{msg}"
    );
}

#[test]
fn server_certificate_in_the_cafile_is_not_a_ca() {
    let set = Set::new(&["127.0.0.1"]);
    let err = ServerTlsOptions {
        cafile: Some(set.path("server.crt")),
        ..set.server_options(true)
    }
    .build()
    .unwrap_err();
    assert!(matches!(err, TlsError::NotACa { .. }), "{err:?}");
}

#[test]
fn capath_directory_is_a_trust_source() {
    let set = Set::new(&["127.0.0.1"]);
    let capath = tempfile::tempdir().unwrap();
    std::fs::copy(set.path("ca.crt"), capath.path().join("ca.pem")).unwrap();
    std::fs::write(capath.path().join("README"), "not a certificate").unwrap();
    ServerTlsOptions {
        cafile: None,
        capath: Some(capath.path().to_path_buf()),
        ..set.server_options(true)
    }
    .build()
    .unwrap();
    {
        let mut tls = set.client_options(true);
        tls.cafile = None;
        tls.capath = Some(capath.path().to_path_buf());
        tls
    }
    .build()
    .unwrap();
}

#[test]
fn crlfile_without_a_crl_is_explained() {
    let set = Set::new(&["127.0.0.1"]);
    let err = ServerTlsOptions {
        crlfile: Some(set.path("ca.crt")),
        ..set.server_options(true)
    }
    .build()
    .unwrap_err();
    assert!(matches!(err, TlsError::BadCrl { .. }), "{err:?}");
    assert!(err.to_string().contains("BEGIN X509 CRL"), "{err}");
}

#[test]
fn generated_keys_are_mode_0600() {
    let set = Set::new(&["127.0.0.1"]);
    for key in ["ca.key", "server.key", "client.key"] {
        let mode = std::fs::metadata(set.path(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let mode = std::fs::metadata(set.path("ca.crt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);
}

#[tokio::test]
async fn reload_picks_up_a_new_certificate_without_dropping_open_connections() {
    let set = Set::new(&["127.0.0.2"]);
    let reloadable = Arc::new(ReloadableServerConfig::new(set.server_options(false)).unwrap());
    assert!(!reloadable.reload_if_changed().unwrap());
    let before = reloadable.current();

    // An open connection with the old certificate (for 127.0.0.2).
    let (addr, handle) = serve_once("127.0.0.2", before.clone(), false).await;
    let client = set.client_options(false).build().unwrap();
    let mut old_client = dial(client.clone(), "127.0.0.2", addr).await.unwrap();
    let mut old_server = within(handle).await.unwrap().unwrap();

    // Re-issue the server certificate for 127.0.0.1 in place.
    let reissued = set.ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    reissued
        .write(&set.path("server.crt"), &set.path("server.key"))
        .unwrap();
    assert!(reloadable.reload_if_changed().unwrap());
    let after = reloadable.current();
    assert!(!Arc::ptr_eq(&before, &after));

    // The old connection still carries data both ways.
    within(old_client.write_all(b"still here")).await.unwrap();
    let mut buf = [0u8; 10];
    within(old_server.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"still here");
    within(old_server.write_all(b"ok")).await.unwrap();
    let mut buf = [0u8; 2];
    within(old_client.read_exact(&mut buf)).await.unwrap();

    // New connections get the new certificate.
    let (addr, handle) = serve_once("127.0.0.1", after, false).await;
    dial(client, "127.0.0.1", addr).await.unwrap();
    within(handle).await.unwrap().unwrap();
}

#[test]
fn failed_reload_keeps_the_previous_config_and_explains() {
    let set = Set::new(&["127.0.0.1"]);
    let reloadable = ReloadableServerConfig::new(set.server_options(false)).unwrap();
    let before = reloadable.current();
    // A half-finished copy: the key of another certificate.
    std::fs::copy(set.path("client.key"), set.path("server.key")).unwrap();
    let err = reloadable.reload_if_changed().unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert!(Arc::ptr_eq(&before, &reloadable.current()));
}
