//! The acl_file rules of Mosquitto 2.0, one behaviour per test.

use mqtt_broker_core::acl_file::{Access, AclFile, AclFileError, RuleAccess};

fn acl(text: &str) -> AclFile {
    AclFile::parse_str(text, "acl").unwrap()
}

#[test]
fn topic_lines_before_any_user_apply_only_to_anonymous_clients() {
    let a = acl("topic read public/#\nuser alice\ntopic readwrite alice/#\n");
    assert!(a.check("c1", None, "public/news", Access::Read));
    assert!(!a.check("c1", None, "public/news", Access::Write));
    assert!(!a.check("c1", None, "alice/x", Access::Read));
    // A named user does not inherit the anonymous section.
    assert!(!a.check("c2", Some("alice"), "public/news", Access::Read));
    assert!(a.check("c2", Some("alice"), "alice/x", Access::Write));
    // A user without a section gets nothing (no patterns).
    assert!(!a.check("c3", Some("bob"), "alice/x", Access::Read));
}

#[test]
fn read_write_and_readwrite_grant_exactly_their_access() {
    let a = acl("user u\ntopic read r\ntopic write w\ntopic readwrite rw\ntopic both\n");
    assert!(a.check("c", Some("u"), "r", Access::Read));
    assert!(!a.check("c", Some("u"), "r", Access::Write));
    assert!(a.check("c", Some("u"), "w", Access::Write));
    assert!(!a.check("c", Some("u"), "w", Access::Read));
    assert!(a.check("c", Some("u"), "rw", Access::Read));
    assert!(a.check("c", Some("u"), "rw", Access::Write));
    // No access word means readwrite.
    assert!(a.check("c", Some("u"), "both", Access::Read));
    assert!(a.check("c", Some("u"), "both", Access::Write));
    assert!(!a.check("c", Some("u"), "other", Access::Read));
}

#[test]
fn deny_wins_over_an_earlier_allow_in_the_same_section() {
    let a = acl("user u\ntopic readwrite home/#\ntopic deny home/secret\n");
    assert!(a.check("c", Some("u"), "home/kitchen", Access::Write));
    assert!(!a.check("c", Some("u"), "home/secret", Access::Read));
    assert!(!a.check("c", Some("u"), "home/secret", Access::Write));
    assert_eq!(a.users()[0].rules[0].access, RuleAccess::Deny);
}

#[test]
fn deny_pattern_wins_over_allow_pattern() {
    let a = acl("pattern readwrite dev/%c/#\npattern deny dev/%c/private\n");
    assert!(a.check("d1", None, "dev/d1/t", Access::Write));
    assert!(!a.check("d1", None, "dev/d1/private", Access::Read));
}

#[test]
fn user_allow_is_checked_before_a_deny_pattern() {
    // Mosquitto checks the user's own list first, then patterns.
    let a = acl("user admin\ntopic read dev/#\npattern deny dev/%u/#\n");
    assert!(a.check("c", Some("admin"), "dev/admin/x", Access::Read));
}

#[test]
fn user_sections_with_the_same_name_are_merged() {
    let a = acl("user u\ntopic read a\nuser v\ntopic read b\nuser u\ntopic read c\n");
    assert!(a.check("x", Some("u"), "a", Access::Read));
    assert!(a.check("x", Some("u"), "c", Access::Read));
    assert!(!a.check("x", Some("u"), "b", Access::Read));
    assert_eq!(a.users().len(), 2);
}

#[test]
fn pattern_substitutes_client_id_and_username() {
    let a = acl("pattern write sensors/%u/%c\npattern read cmd/%c/#\n");
    assert!(a.check("dev7", Some("alice"), "sensors/alice/dev7", Access::Write));
    assert!(!a.check("dev7", Some("alice"), "sensors/bob/dev7", Access::Write));
    assert!(!a.check("dev8", Some("alice"), "sensors/alice/dev7", Access::Write));
    assert!(a.check("dev7", None, "cmd/dev7/reboot", Access::Read));
    assert!(!a.check("dev7", None, "cmd/dev8/reboot", Access::Read));
}

#[test]
fn pattern_with_username_never_applies_to_anonymous_client() {
    let a = acl("pattern readwrite users/%u/#\n");
    assert!(!a.check("c", None, "users/%u/x", Access::Read));
    assert!(!a.check("c", None, "users//x", Access::Read));
    assert!(a.check("c", Some("u"), "users/u/x", Access::Read));
}

#[test]
fn pattern_with_wildcards_after_substitution_matches_subtopics() {
    let a = acl("pattern read home/%u/+/state\npattern write home/%u/#\n");
    assert!(a.check("c", Some("ann"), "home/ann/lamp/state", Access::Read));
    assert!(!a.check("c", Some("ann"), "home/ann/lamp/x/state", Access::Read));
    assert!(a.check("c", Some("ann"), "home/ann", Access::Write));
    assert!(a.check("c", Some("ann"), "home/ann/a/b/c", Access::Write));
}

#[test]
fn client_id_or_username_with_wildcards_is_denied_when_patterns_exist() {
    let a = acl("pattern readwrite home/%u/#\npattern readwrite dev/%c\n");
    assert!(!a.check("c", Some("+"), "home/x/y", Access::Read));
    assert!(!a.check("c", Some("#"), "home/x", Access::Write));
    assert!(!a.check("#", None, "dev/anything", Access::Write));
    assert!(!a.check("+", Some("u"), "dev/x", Access::Read));
}

#[test]
fn dollar_topics_match_only_rules_that_start_with_dollar() {
    let a = acl("topic read #\ntopic read +/broker\nuser u\ntopic read $SYS/#\n");
    assert!(!a.check("c", None, "$SYS/broker", Access::Read));
    assert!(a.check("c", None, "x/broker", Access::Read));
    assert!(a.check("c", Some("u"), "$SYS/broker/uptime", Access::Read));
}

#[test]
fn subscribe_is_always_allowed_and_delivery_is_checked_with_read() {
    // Mosquitto 2.0 lets any SUBSCRIBE through the acl_file check and checks
    // read access per delivered message.
    let a = acl("user u\ntopic read a/b\n");
    assert!(a.check("c", Some("u"), "#", Access::Subscribe));
    assert!(a.check("c", None, "x/+", Access::Subscribe));
    assert!(a.check("c", Some("u"), "a/b", Access::Read));
    assert!(!a.check("c", Some("u"), "a/c", Access::Read));
}

#[test]
fn empty_file_denies_everything() {
    let a = acl("# nothing\n\n");
    assert!(!a.check("c", None, "t", Access::Read));
    assert!(!a.check("c", Some("u"), "t", Access::Write));
}

#[test]
fn topic_with_spaces_and_comments_and_indentation_are_accepted() {
    let a = acl("# comment\n  user  bob smith \n\ttopic read  living room/lamp  \n");
    assert!(a.check("c", Some("bob smith"), "living room/lamp", Access::Read));
}

#[test]
fn pattern_without_placeholder_loads_with_a_warning() {
    let a = acl("\npattern read everyone/#\n");
    assert!(a.check("c", None, "everyone/x", Access::Read));
    assert_eq!(a.warnings().len(), 1);
    assert!(a.warnings()[0].starts_with("acl:2:"), "{:?}", a.warnings());
}

fn parse_err(text: &str) -> (usize, String) {
    match AclFile::parse_str(text, "/etc/mosquitto/acl") {
        Err(AclFileError::Parse {
            file,
            line,
            message,
        }) => {
            assert_eq!(file, "/etc/mosquitto/acl");
            (line, message)
        }
        other => panic!("expected parse error, got {other:?}"),
    }
}

#[test]
fn bad_lines_are_errors_naming_file_line_and_expectation() {
    let (line, msg) = parse_err("user u\ntopic rw a/b\n");
    assert_eq!(line, 2);
    assert!(msg.contains("read, write, readwrite or deny"), "{msg}");
    let (line, msg) = parse_err("topik read a\n");
    assert_eq!(line, 1);
    assert!(msg.contains("'topik'"), "{msg}");
    let (_, msg) = parse_err("topic read a/#/b\n");
    assert!(msg.contains("invalid topic"), "{msg}");
    let (_, msg) = parse_err("topic\n");
    assert!(msg.contains("needs a topic"), "{msg}");
    let (_, msg) = parse_err("user\n");
    assert!(msg.contains("missing username"), "{msg}");
    let err = AclFile::parse_str("pattern read a+\n", "f").unwrap_err();
    assert!(err.to_string().starts_with("f:1: "), "{err}");
}

#[test]
fn load_reads_a_file_and_names_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("acl");
    std::fs::write(&p, "user u\ntopic read t\n").unwrap();
    assert!(AclFile::load(&p)
        .unwrap()
        .check("c", Some("u"), "t", Access::Read));
    let err = AclFile::load(dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
