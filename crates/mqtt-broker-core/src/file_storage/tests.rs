use super::*;
use mqtt_codec::TopicName;

fn session(id: &str) -> StoredSession {
    let mut rap = SubscriptionOptions::qos(QoS::ExactlyOnce);
    rap.no_local = true;
    rap.retain_as_published = true;
    rap.retain_handling = RetainHandling::DoNotSend;
    StoredSession {
        client_id: id.to_string(),
        username: Some("pi".to_string()),
        protocol: ProtocolVersion::V5,
        expiry: Some(Duration::from_secs(3600)),
        subscriptions: vec![
            (TopicFilter::try_from("sensors/#").unwrap(), rap, 7),
            (
                TopicFilter::try_from("$share/g/a/+").unwrap(),
                SubscriptionOptions::qos(QoS::AtMostOnce),
                0,
            ),
        ],
        incoming_qos2: vec![1, 65535],
    }
}

fn message(topic: &str, payload: &str, expires_in: Option<Duration>) -> StoredMessage {
    let mut properties = mqtt_codec::PublishProperties::default();
    properties.content_type = Some("text/plain".into());
    properties
        .user_properties
        .push(("site".into(), "kitchen".into()));
    StoredMessage {
        topic: TopicName::try_from(topic).unwrap(),
        payload: payload.as_bytes().to_vec().into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties,
        expires_in,
    }
}

fn delivery(payload: &str, packet_id: Option<u16>) -> StoredDelivery {
    StoredDelivery {
        message: message("sensors/kitchen", payload, None),
        qos: QoS::ExactlyOnce,
        retain: false,
        subscription_identifiers: vec![7, 268_435_455],
        packet_id,
        released: packet_id.is_some(),
    }
}

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_record(&mut out, kind, body);
    out
}

fn file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mqtt-broker.db")
}

#[test]
fn what_is_saved_is_loaded_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    assert_eq!(st.load(), StoredState::default());
    st.save_session(&session("pi"));
    st.save_message("pi", 1, &delivery("queued", None));
    st.save_message("pi", 2, &delivery("in flight", Some(9)));
    st.save_retained(&message("sensors/kitchen", "21.5", None));
    drop(st);

    let mut st = FileStorage::open(file(&dir)).unwrap();
    let state = st.load();
    assert_eq!(state.sessions, [session("pi")]);
    assert_eq!(
        state.messages,
        [
            ("pi".to_string(), 1, delivery("queued", None)),
            ("pi".to_string(), 2, delivery("in flight", Some(9))),
        ]
    );
    assert_eq!(state.retained, [message("sensors/kitchen", "21.5", None)]);
    // The broker reads once.
    assert_eq!(st.load(), StoredState::default());
}

#[test]
fn replaced_and_removed_records_stay_that_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    st.save_session(&session("a"));
    st.save_session(&session("b"));
    st.save_message("a", 1, &delivery("1", None));
    st.save_message("a", 1, &delivery("1", Some(3)));
    st.save_message("a", 2, &delivery("2", None));
    st.save_message("b", 1, &delivery("b1", None));
    st.remove_message("a", 2);
    st.remove_session("b");
    st.save_retained(&message("r/1", "one", None));
    st.save_retained(&message("r/2", "two", None));
    st.save_retained(&message("r/1", "uno", None));
    st.remove_retained("r/2");
    drop(st);

    let state = FileStorage::open(file(&dir)).unwrap().load();
    assert_eq!(state.sessions, [session("a")]);
    assert_eq!(
        state.messages,
        [("a".to_string(), 1, delivery("1", Some(3)))]
    );
    assert_eq!(state.retained, [message("r/1", "uno", None)]);
}

#[test]
fn expiry_is_a_deadline_that_runs_while_the_broker_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    let hour = Duration::from_secs(3600);
    st.save_retained(&message("r/later", "x", Some(hour)));
    st.save_retained(&message("r/now", "y", Some(Duration::ZERO)));
    drop(st);
    let state = FileStorage::open(file(&dir)).unwrap().load();
    let left: Vec<_> = state.retained.iter().map(|m| m.expires_in).collect();
    let later = left[0].unwrap();
    assert!(
        later <= hour && later > hour - Duration::from_secs(60),
        "{later:?}"
    );
    // A message whose time ran out comes back with none left (the broker
    // drops it at once).
    assert!(left[1].unwrap() <= Duration::from_millis(10), "{left:?}");
}

#[test]
fn a_record_cut_short_by_a_crash_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    st.save_session(&session("pi"));
    st.save_retained(&message("r", "kept", None));
    drop(st);
    let whole = std::fs::read(file(&dir)).unwrap();
    let mut cut = whole.clone();
    cut.extend_from_slice(&record(RETAINED, &[1, 2, 3, 4, 5, 6, 7, 8, 9])[..7]);
    std::fs::write(file(&dir), &cut).unwrap();

    let state = FileStorage::open(file(&dir)).unwrap().load();
    assert_eq!(state.sessions, [session("pi")]);
    assert_eq!(state.retained, [message("r", "kept", None)]);
    // The file was rewritten without the fragment.
    assert_eq!(std::fs::read(file(&dir)).unwrap(), whole);
}

#[test]
fn a_mosquitto_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = MOSQUITTO_MAGIC.to_vec();
    db.extend_from_slice(&[0, 0, 0, 6, 1, 2, 3]);
    std::fs::write(file(&dir), &db).unwrap();
    let err = FileStorage::open(file(&dir)).unwrap_err();
    assert!(
        matches!(err, FileStorageError::MosquittoDatabase { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("is a Mosquitto database") && msg.contains("persistence_file"),
        "{msg}"
    );
    assert_eq!(std::fs::read(file(&dir)).unwrap(), db);
}

#[test]
fn a_file_of_something_else_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(file(&dir), b"listener 1883\n").unwrap();
    let err = FileStorage::open(file(&dir)).unwrap_err();
    assert!(matches!(err, FileStorageError::NotOurs { .. }), "{err:?}");
    assert_eq!(std::fs::read(file(&dir)).unwrap(), b"listener 1883\n");
}

#[test]
fn a_damaged_record_is_an_error_that_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = MAGIC.to_vec();
    bad.extend_from_slice(&record(REMOVE_RETAINED, &{
        let mut b = Vec::new();
        put_str(&mut b, "t");
        b
    }));
    let at = bad.len();
    bad.extend_from_slice(&record(9, b"?"));
    std::fs::write(file(&dir), &bad).unwrap();
    let err = FileStorage::open(file(&dir)).unwrap_err();
    match &err {
        FileStorageError::Corrupt { offset, what, .. } => {
            assert_eq!(*offset, at);
            assert!(what.contains("unknown record kind 9"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(file(&dir)).unwrap(), bad);

    // A stored message that is not a PUBLISH.
    let mut bad = MAGIC.to_vec();
    let mut body = 0u64.to_be_bytes().to_vec();
    body.extend_from_slice(&2u32.to_be_bytes());
    body.extend_from_slice(&[0xC0, 0]);
    bad.extend_from_slice(&record(RETAINED, &body));
    std::fs::write(file(&dir), &bad).unwrap();
    let err = FileStorage::open(file(&dir)).unwrap_err().to_string();
    assert!(
        err.contains("not one PUBLISH") && err.contains("Move it away"),
        "{err}"
    );
}

/// A valid file's bytes: a session, messages and a retained message.
fn valid_file() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    st.save_session(&session("pi"));
    st.save_message("pi", 1, &delivery("queued", None));
    st.save_message("pi", 2, &delivery("in flight", Some(9)));
    st.save_retained(&message("r", "kept", Some(Duration::from_secs(60))));
    st.remove_retained("gone");
    drop(st);
    std::fs::read(file(&dir)).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Whatever follows the magic line, opening gives a storage or a typed
    /// error, never a panic.
    #[test]
    fn arbitrary_records_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        std::fs::write(file(&dir), &bytes).unwrap();
        if FileStorage::open(file(&dir)).is_err() {
            proptest::prop_assert_eq!(std::fs::read(file(&dir)).unwrap(), bytes);
        }
    }

    /// A valid file with bytes changed or cut: the same.
    #[test]
    fn damaged_valid_files_never_panic(
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..4),
        cut in proptest::prelude::any::<proptest::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = valid_file();
        for (at, v) in flips {
            let i = MAGIC.len() + at.index(bytes.len() - MAGIC.len());
            bytes[i] = v;
        }
        bytes.truncate(MAGIC.len() + cut.index(bytes.len() - MAGIC.len() + 1));
        std::fs::write(file(&dir), &bytes).unwrap();
        if FileStorage::open(file(&dir)).is_err() {
            proptest::prop_assert_eq!(std::fs::read(file(&dir)).unwrap(), bytes);
        }
    }
}

#[test]
fn the_file_is_rewritten_when_it_is_mostly_replaced_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    st.save_session(&session("pi"));
    let mut rewrites = 0;
    let mut last = 0;
    for i in 0..30_000 {
        st.save_retained(&message("r", &format!("{i:0>100}"), None));
        // As the driver does after every broker call.
        st.flush();
        let size = std::fs::metadata(file(&dir)).unwrap().len();
        // The live state is a few hundred bytes: the file never grows
        // past twice that plus the slack (and one batch).
        assert!(size <= REWRITE_SLACK + 2048, "{size}");
        if size < last {
            rewrites += 1;
        }
        last = size;
    }
    // ~5 MB of records for two live ones: rewritten a few times, not at
    // every change.
    assert!((2..10).contains(&rewrites), "{rewrites} rewrites");
    drop(st);
    let state = FileStorage::open(file(&dir)).unwrap().load();
    assert_eq!(
        state.retained,
        [message("r", &format!("{:0>100}", 29_999), None)]
    );
    assert_eq!(state.sessions, [session("pi")]);
}

#[test]
fn a_directory_that_does_not_exist_is_an_error_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileStorage::open(dir.path().join("no/such/dir/mqtt-broker.db"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("persistence_location"), "{err}");
}

#[test]
fn records_reach_the_file_at_flush_as_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    let empty = std::fs::metadata(file(&dir)).unwrap().len();
    st.save_session(&session("pi"));
    st.save_message("pi", 1, &delivery("one", None));
    assert_eq!(std::fs::metadata(file(&dir)).unwrap().len(), empty);
    st.flush();
    let flushed = std::fs::metadata(file(&dir)).unwrap().len();
    assert!(flushed > empty);
    // A second storage reading the file now (a crash here) finds both.
    let state = FileStorage::open(file(&dir)).unwrap().load();
    assert_eq!(state.sessions, [session("pi")]);
    assert_eq!(state.messages.len(), 1);
}

#[test]
fn a_big_batch_is_written_before_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    let big = "x".repeat(MAX_PENDING);
    st.save_retained(&message("big", &big, None));
    // Handed to the writer thread without a flush.
    assert!(st.pending.is_empty());
    st.shared.progress.ticket(st.submitted).wait();
    assert!(std::fs::metadata(file(&dir)).unwrap().len() > MAX_PENDING as u64);
}

/// What a second broker would load from the file now (read from a copy:
/// opening rewrites the file).
fn state_in_file(dir: &tempfile::TempDir) -> StoredState {
    let copy = dir.path().join("copy.db");
    std::fs::copy(file(dir), &copy).unwrap();
    FileStorage::open(copy).unwrap().load()
}

#[test]
fn a_failed_write_is_retried_with_the_whole_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = FileStorage::open(file(&dir)).unwrap();
    st.save_session(&session("pi"));
    st.flush();
    // The disk fills up.
    st.shared.fail_writes.store(true, Ordering::Relaxed);
    st.save_retained(&message("r/1", "one", None));
    st.flush();
    assert!(st.shared.failing.load(Ordering::Relaxed));
    st.remove_session("pi");
    st.save_retained(&message("r/2", "two", None));
    // A flush while failing returns too: the state is kept in memory.
    st.flush();
    // Room again, but the retry waits for its interval.
    st.shared.fail_writes.store(false, Ordering::Relaxed);
    st.save_retained(&message("r/0", "zero", None));
    st.flush();
    assert!(st.shared.failing.load(Ordering::Relaxed));
    assert_eq!(state_in_file(&dir).sessions, [session("pi")]);
    // The interval passes: the writer thread rewrites the file by itself.
    st.shared.retry_after_ms.store(0, Ordering::Relaxed);
    st.shared.wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(10);
    while st.shared.failing.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "no retry");
        std::thread::sleep(Duration::from_millis(5));
    }
    let state = state_in_file(&dir);
    assert!(state.sessions.is_empty());
    assert_eq!(
        state.retained,
        [
            message("r/0", "zero", None),
            message("r/1", "one", None),
            message("r/2", "two", None)
        ]
    );
    // And appending works again.
    st.save_retained(&message("r/3", "three", None));
    st.flush();
    assert_eq!(state_in_file(&dir).retained.len(), 4);
}
