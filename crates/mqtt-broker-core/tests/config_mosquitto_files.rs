//! The configuration files users already have: Debian's stock
//! `mosquitto.conf` and the guide's `conf.d/ssl.conf`.

use std::path::PathBuf;

use mqtt_broker_core::config::{Config, ConfigError};

/// Debian's stock `/etc/mosquitto/mosquitto.conf` (mosquitto 2.0.11-1), verbatim.
const DEBIAN_STOCK: &str = "\
# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
";

/// The guide's `/etc/mosquitto/conf.d/ssl.conf`.
const GUIDE_SSL_CONF: &str = "\
listener 8883
cafile /etc/mosquitto/ca_certificates/ca.crt
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
require_certificate true
";

fn fixture_conf_d() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conf/conf.d")
}

/// The stock text with only its include_dir pointed at `dir`.
fn stock_with_conf_d(dir: &std::path::Path) -> String {
    DEBIAN_STOCK.replace(
        "include_dir /etc/mosquitto/conf.d",
        &format!("include_dir {}", dir.display()),
    )
}

#[test]
fn debian_stock_config_with_guide_ssl_conf_gives_one_mutual_tls_listener() {
    let dir = fixture_conf_d();
    assert_eq!(
        std::fs::read_to_string(dir.join("ssl.conf")).unwrap(),
        GUIDE_SSL_CONF
    );
    let (config, warnings) =
        Config::parse_str(&stock_with_conf_d(&dir), "/etc/mosquitto/mosquitto.conf").unwrap();

    assert!(!config.local_only);
    assert_eq!(config.listeners.len(), 1);
    let l = &config.listeners[0];
    assert_eq!(l.port, 8883);
    assert_eq!(l.bind_address, None);
    assert!(l.tls.enabled());
    assert_eq!(
        l.tls.cafile.as_deref(),
        Some("/etc/mosquitto/ca_certificates/ca.crt".as_ref())
    );
    assert_eq!(
        l.tls.certfile.as_deref(),
        Some("/etc/mosquitto/certs/server.crt".as_ref())
    );
    assert_eq!(
        l.tls.keyfile.as_deref(),
        Some("/etc/mosquitto/certs/server.key".as_ref())
    );
    assert!(l.tls.require_certificate);
    assert_eq!(l.origin.file, dir.join("ssl.conf").display().to_string());
    assert_eq!(l.origin.line, 1);
    // Mosquitto 2: a listener is defined and allow_anonymous is absent, so
    // anonymous access is off (the broker accepts verified certificates).
    assert_eq!(config.security.allow_anonymous, None);
    assert!(!config.allow_anonymous(l));
    assert!(config.persistence);
    assert_eq!(
        config.persistence_path(),
        std::path::Path::new("/var/lib/mosquitto/mqtt-broker.db")
    );
    // README in conf.d is not a .conf file and is not read.
    assert_eq!(config.files.len(), 2);

    let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["pid_file", "log_dest"]);
    assert_eq!(warnings[0].line, 6);
    assert!(warnings[0]
        .to_string()
        .starts_with("/etc/mosquitto/mosquitto.conf:6: 'pid_file' is ignored"));
}

#[test]
fn debian_stock_config_with_empty_conf_d_is_local_only_with_anonymous_allowed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), "not a config\n").unwrap();
    let (config, _) = Config::parse_str(&stock_with_conf_d(dir.path()), "mosquitto.conf").unwrap();
    assert!(config.local_only);
    let addrs: Vec<(Option<&str>, u16)> = config
        .listeners
        .iter()
        .map(|l| (l.bind_address.as_deref(), l.port))
        .collect();
    assert_eq!(addrs, [(Some("127.0.0.1"), 1883), (Some("::1"), 1883)]);
    assert!(config.listeners.iter().all(|l| config.allow_anonymous(l)));
}

#[test]
fn installed_debian_config_loads_unchanged_when_present() {
    let path = "/etc/mosquitto/mosquitto.conf";
    if !std::path::Path::new(path).exists() {
        println!("skipped: {path} not present on this machine");
        return;
    }
    match Config::load(path) {
        Ok((config, _)) => assert_eq!(config.files[0], path),
        // conf.d may hold files this broker refuses; those errors must name them.
        Err(e) => assert!(
            e.file()
                .is_some_and(|f| f.starts_with("/etc/mosquitto/conf.d/")),
            "{e}"
        ),
    }
}

#[test]
fn load_reads_main_file_and_names_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("mosquitto.conf");
    std::fs::write(&main, GUIDE_SSL_CONF).unwrap();
    let (config, warnings) = Config::load(&main).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(config.listeners[0].port, 8883);
    assert_eq!(config.files, [main.display().to_string()]);

    let missing = dir.path().join("nope.conf");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().contains("nope.conf"), "{err}");
}

#[test]
fn include_dir_reads_only_conf_files_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("b.conf"), "listener 2000\n").unwrap();
    std::fs::write(d.join("a.conf"), "listener 1000\n").unwrap();
    std::fs::write(d.join("C.conf"), "listener 3000\n").unwrap();
    std::fs::write(d.join(".conf"), "keyfil x\n").unwrap();
    std::fs::write(d.join("x.conf.disabled"), "keyfil x\n").unwrap();
    std::fs::write(d.join("notes.txt"), "keyfil x\n").unwrap();
    let text = format!("include_dir {}\nallow_anonymous true\n", d.display());
    let (config, _) = Config::parse_str(&text, "main.conf").unwrap();
    let ports: Vec<u16> = config.listeners.iter().map(|l| l.port).collect();
    // Byte order, as Mosquitto's strcmp: "C" < "a" < "b".
    assert_eq!(ports, [3000, 1000, 2000]);
    assert!(config.allow_anonymous(&config.listeners[0]));
}

#[test]
fn include_dir_inside_an_included_file_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(inner.join("x.conf"), "listener 9999\n").unwrap();
    std::fs::write(
        dir.path().join("a.conf"),
        format!("listener 1000\ninclude_dir {}\n", inner.display()),
    )
    .unwrap();
    let text = format!("include_dir {}\n", dir.path().display());
    let (config, warnings) = Config::parse_str(&text, "main.conf").unwrap();
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].key, "include_dir");
    assert_eq!(warnings[0].line, 2);
}

#[test]
fn error_in_an_included_file_names_that_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ssl = dir.path().join("ssl.conf");
    std::fs::write(&ssl, "listener 8883\ncafile /c\nkeyfil /k\n").unwrap();
    let err = Config::parse_str(&stock_with_conf_d(dir.path()), "mosquitto.conf").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: unknown option 'keyfil' (did you mean 'keyfile'?)",
            ssl.display()
        )
    );
    assert_eq!(err.line(), Some(3));
    assert_eq!(err.key(), Some("keyfil"));
}

#[test]
fn missing_include_dir_is_an_error_naming_the_line() {
    let err = Config::parse_str("\ninclude_dir /nonexistent/conf.d\n", "main.conf").unwrap_err();
    assert!(
        matches!(err, ConfigError::Include { line: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("/nonexistent/conf.d"), "{err}");
}
