//! Durable storage in one file (feature `file-storage`, part of `tokio`):
//! what `persistence true` turns on.
//!
//! Every change the broker hands its [`Storage`] becomes one record. The
//! file is written by a thread of its own: at [`Storage::start_flush`]
//! (and [`Storage::flush`], which also waits) the records buffered so far
//! are handed to it, and it appends everything handed over since its last
//! write with one `write`, so the broker's calls never wait for the disk
//! and busy moments become fewer, larger writes. The bytes the broker
//! produced wait for that write ([`crate::Broker::take_transmit`] blocks,
//! [`crate::Broker::take_transmit_when_stored`], which the tokio driver
//! uses, hands them out in a [`crate::Transmit`] that opens after it): a
//! broker that crashes or is killed loses nothing it had acknowledged.
//! Records are also handed over when 64 KiB are waiting, and on drop. The
//! file is flushed to the disk (`fsync`) when it is rewritten and when the
//! storage is dropped.
//!
//! At open, and whenever the file has grown to twice its size after the
//! last rewrite plus 1 MiB (replaced and removed records: a queued message
//! is written when it is queued, sent and acknowledged), the file is
//! rewritten with only the live state, to a temporary file then renamed
//! over it, so a crash leaves the old file or the new one, never half of
//! one. Each byte written is thus rewritten at most about once.
//!
//! Expiry times are stored as wall-clock deadlines, so a message's time
//! runs while the broker is down, as in Mosquitto.
//!
//! The format is this crate's own (a magic line, then records of a kind
//! byte, a length and a body; application messages are stored as 5.0
//! PUBLISH packets). It does not read Mosquitto's `mosquitto.db`, and
//! never writes over one: [`FileStorage::open`] refuses it with
//! [`FileStorageError::MosquittoDatabase`].

use crate::storage::{Storage, StoredDelivery, StoredMessage, StoredSession, StoredState};
use crate::write_progress::{FlushTicket, WriteProgress};
use bytes::BytesMut;
use mqtt_codec::{
    Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions,
    TopicFilter,
};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The first bytes of every file this storage writes (format version 1).
const MAGIC: &[u8] = b"mqtt-broker-core storage 1\n";
/// The first bytes of a Mosquitto database (`src/persist_read.c`).
const MOSQUITTO_MAGIC: &[u8] = b"\x00\xB5\x00mosquitto db";
/// Rewrite the file once it has grown by this much more than its size
/// after the last rewrite.
const REWRITE_SLACK: u64 = 1 << 20;
/// Write buffered records without waiting for a flush beyond this size.
const MAX_PENDING: usize = 64 * 1024;
/// After a failed write (a full disk), how often the whole file is tried
/// again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

const SESSION: u8 = 1;
const REMOVE_SESSION: u8 = 2;
const MESSAGE: u8 = 3;
const REMOVE_MESSAGE: u8 = 4;
const RETAINED: u8 = 5;
const REMOVE_RETAINED: u8 = 6;

/// Why a persistence file cannot be used. The file is left as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileStorageError {
    /// The file or its directory could not be read or written.
    #[error("cannot use the persistence file {}: {source}{}", path.display(), io_hint(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is Mosquitto's database, which this broker cannot read.
    #[error(
        "{} is a Mosquitto database, which this broker cannot read; it is left untouched. \
         Set persistence_file to another name (e.g. mqtt-broker.db) to keep this broker's state",
        path.display()
    )]
    MosquittoDatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is not empty and is not a persistence file of this broker.
    #[error(
        "{} is not a persistence file of this broker (it does not start with {:?}); \
         it is left untouched. Point persistence_file at another name, or move the file away",
        path.display(),
        String::from_utf8_lossy(MAGIC).trim_end()
    )]
    NotOurs {
        /// The file.
        path: PathBuf,
    },
    /// A record in the file is damaged.
    #[error(
        "{}: the record at byte {offset} is damaged ({what}); the file is left untouched. \
         Move it away to start with an empty state",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: usize,
        /// What is wrong with it.
        what: String,
    },
}

fn io_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::PermissionDenied => {
            " (the user this broker runs as may not write there: choose a persistence_location it owns)"
        }
        ErrorKind::NotFound => " (does the persistence_location directory exist?)",
        _ => "",
    }
}

/// A [`Storage`] that keeps the broker's persistent state in one file; see
/// the module documentation.
///
/// ```no_run
/// use mqtt_broker_core::{Broker, BrokerConfig, FileStorage};
/// let storage = FileStorage::open("/var/lib/my-broker/mqtt-broker.db")?;
/// let broker = Broker::new(BrokerConfig::default()).with_storage(Box::new(storage));
/// # Ok::<(), mqtt_broker_core::FileStorageError>(())
/// ```
#[derive(Debug)]
pub struct FileStorage {
    path: PathBuf,
    /// What was in the file at open, until the broker reads it.
    loaded: Option<StoredState>,
    /// Records not handed to the writer thread yet.
    pending: Vec<u8>,
    /// Batches of records handed to the writer thread so far.
    submitted: u64,
    shared: Arc<WriterShared>,
    thread: Option<JoinHandle<()>>,
}

/// What the broker's side and the writer thread share.
#[derive(Debug)]
struct WriterShared {
    queue: Mutex<Queue>,
    /// Wakes the writer: records, or stop.
    wake: Condvar,
    progress: Arc<WriteProgress>,
    /// A write failed: the state is kept in memory until a rewrite works.
    failing: AtomicBool,
    /// How long after a failed write the whole file is tried again.
    retry_after_ms: AtomicU64,
    /// Tests make writes fail with this.
    #[cfg(test)]
    fail_writes: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    /// Records handed over and not taken by the writer yet.
    records: Vec<u8>,
    /// The number of the last batch in `records`.
    batch: u64,
    stop: bool,
}

impl WriterShared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retry_after(&self) -> Duration {
        Duration::from_millis(self.retry_after_ms.load(Ordering::Relaxed))
    }
}

impl FileStorage {
    /// Opens (or creates) the file at `path` and reads what it holds. A
    /// record cut short at the end (a crash while it was written) is
    /// dropped with a warning; anything else that is wrong is an error and
    /// the file is not touched. From here on the file is written by a
    /// thread of its own.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, FileStorageError> {
        let path = path.into();
        let io = |source| FileStorageError::Io {
            path: path.clone(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let shared = Arc::new(WriterShared {
            queue: Mutex::default(),
            wake: Condvar::new(),
            progress: WriteProgress::new(),
            failing: AtomicBool::new(false),
            retry_after_ms: AtomicU64::new(RETRY_AFTER_FAILURE.as_millis() as u64),
            #[cfg(test)]
            fail_writes: AtomicBool::new(false),
        });
        let mut book = Book {
            path: path.clone(),
            file: None,
            sessions: BTreeMap::new(),
            messages: Messages::default(),
            retained: BTreeMap::new(),
            file_bytes: 0,
            rewritten_bytes: 0,
            failed_at: None,
            shared: shared.clone(),
        };
        if !bytes.is_empty() {
            book.replay(&bytes)?;
        }
        // Only now that everything read is good is the file replaced.
        book.rewrite().map_err(io)?;
        let loaded = Some(book.decode_state());
        let thread = std::thread::Builder::new()
            .name("mqtt-storage".into())
            .spawn(move || book.run())
            .map_err(io)?;
        Ok(Self {
            path,
            loaded,
            pending: Vec::new(),
            submitted: 0,
            shared,
            thread: Some(thread),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues one record for the next [`Storage::flush`].
    fn append(&mut self, kind: u8, body: &[u8]) {
        push_record(&mut self.pending, kind, body);
        if self.pending.len() > MAX_PENDING {
            self.submit();
        }
    }

    /// Hands the pending records to the writer thread.
    fn submit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.submitted += 1;
        {
            let mut q = self.shared.queue();
            if q.records.is_empty() {
                // The writer took the last batch: hand this one over whole,
                // and keep the (empty) buffer it left for the next.
                std::mem::swap(&mut q.records, &mut self.pending);
            } else {
                // The writer is busy: it takes both as one write.
                q.records.extend_from_slice(&self.pending);
                self.pending.clear();
            }
            q.batch = self.submitted;
        }
        self.shared.wake.notify_one();
    }

    /// A ticket for everything handed over, unless it is written already.
    fn ticket(&self) -> Option<FlushTicket> {
        (self.shared.progress.written() < self.submitted)
            .then(|| self.shared.progress.ticket(self.submitted))
    }
}

/// The file and its live records: owned by the writer thread.
#[derive(Debug)]
struct Book {
    path: PathBuf,
    /// Open for appending; `None` until the file has been read.
    file: Option<File>,
    /// The live records' bodies, as written (deadlines are absolute).
    sessions: BTreeMap<String, Vec<u8>>,
    messages: Messages,
    retained: BTreeMap<String, Vec<u8>>,
    /// Bytes in the file.
    file_bytes: u64,
    /// The file's size after the last rewrite.
    rewritten_bytes: u64,
    /// When a write last failed: until a rewrite succeeds (tried every
    /// `retry_after`) the state is kept in memory only.
    failed_at: Option<Instant>,
    shared: Arc<WriterShared>,
}

impl Book {
    /// The writer thread: takes what the broker's side handed over, as one
    /// batch, applies it to the live records and writes it; retries a
    /// failed write after its interval; on stop, writes the rest and
    /// flushes the file to the disk.
    fn run(mut self) {
        let shared = self.shared.clone();
        let mut spare = Vec::new();
        loop {
            let (batch, stop) = {
                let mut q = shared.queue();
                loop {
                    if !q.records.is_empty() || q.stop {
                        break;
                    }
                    match self.failed_at {
                        None => q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
                        Some(at) => {
                            let left = shared.retry_after().saturating_sub(at.elapsed());
                            if left.is_zero() {
                                break;
                            }
                            q = shared
                                .wake
                                .wait_timeout(q, left)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                }
                std::mem::swap(&mut q.records, &mut spare);
                (q.batch, q.stop)
            };
            self.apply_batch(&spare);
            self.write(&spare, stop);
            spare.clear();
            shared.progress.done_up_to(batch);
            if stop {
                if let Some(file) = &self.file {
                    let _ = file.sync_all();
                }
                return;
            }
        }
    }

    /// Applies records written by this storage to the live records.
    fn apply_batch(&mut self, mut rest: &[u8]) {
        while rest.len() >= 5 {
            let kind = rest[0];
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let Some(body) = rest.get(5..5 + len) else {
                return;
            };
            // Encoded by this storage a moment ago: cannot fail.
            let _ = self.apply(kind, body);
            rest = &rest[5 + len..];
        }
    }

    /// Applies the records of a file's `bytes` to the maps.
    fn replay(&mut self, bytes: &[u8]) -> Result<(), FileStorageError> {
        if bytes.starts_with(MOSQUITTO_MAGIC) {
            return Err(FileStorageError::MosquittoDatabase {
                path: self.path.clone(),
            });
        }
        let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
            return Err(FileStorageError::NotOurs {
                path: self.path.clone(),
            });
        };
        let mut offset = MAGIC.len();
        while !rest.is_empty() {
            if rest.len() < 5 {
                warn_truncated(&self.path, rest.len());
                break;
            }
            let kind = rest[0];
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if rest.len() - 5 < len {
                warn_truncated(&self.path, rest.len());
                break;
            }
            let body = &rest[5..5 + len];
            self.apply(kind, body)
                .map_err(|what| FileStorageError::Corrupt {
                    path: self.path.clone(),
                    offset,
                    what,
                })?;
            rest = &rest[5 + len..];
            offset += 5 + len;
        }
        Ok(())
    }

    /// Applies one record to the maps.
    fn apply(&mut self, kind: u8, body: &[u8]) -> Result<(), String> {
        let mut r = Reader(body);
        match kind {
            SESSION => {
                let session = decode_session(&mut r)?;
                self.sessions.insert(session.client_id, body.to_vec());
            }
            REMOVE_SESSION => {
                let id = r.string()?;
                self.forget_session(&id);
            }
            MESSAGE => {
                let id = r.string()?;
                let seq = r.u64()?;
                decode_delivery(&mut r)?;
                self.messages.insert(&id, seq, body.to_vec());
            }
            REMOVE_MESSAGE => {
                let id = r.string()?;
                let seq = r.u64()?;
                self.messages.remove(&id, seq);
            }
            RETAINED => {
                let m = decode_message(&mut r)?;
                self.retained.insert(m.topic.to_string(), body.to_vec());
            }
            REMOVE_RETAINED => {
                let topic = r.string()?;
                self.retained.remove(&topic);
            }
            other => return Err(format!("unknown record kind {other}")),
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the record", r.0.len()));
        }
        Ok(())
    }

    fn forget_session(&mut self, client_id: &str) {
        self.sessions.remove(client_id);
        self.messages.remove_client(client_id);
    }

    /// The maps as the broker's stored state. Every body was decoded
    /// once already when it was read or written, so none is skipped.
    fn decode_state(&self) -> StoredState {
        let sessions = self.sessions.values();
        let messages = self.messages.values();
        let retained = self.retained.values();
        StoredState {
            sessions: sessions
                .filter_map(|b| decode_session(&mut Reader(b)).ok())
                .collect(),
            messages: messages
                .filter_map(|b| {
                    let mut r = Reader(b);
                    Some((
                        r.string().ok()?,
                        r.u64().ok()?,
                        decode_delivery(&mut r).ok()?,
                    ))
                })
                .collect(),
            retained: retained
                .filter_map(|b| decode_message(&mut Reader(b)).ok())
                .collect(),
        }
    }

    /// Rewrites the file with the live records only, and flushes it (what
    /// Rewrites the file with the live records only, and flushes it to the
    /// disk.
    fn rewrite(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.shared.fail_writes.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("no space left on device (test)"));
        }
        let records = (self.sessions.values().map(|b| (SESSION, b)))
            .chain(self.messages.values().map(|b| (MESSAGE, b)))
            .chain(self.retained.values().map(|b| (RETAINED, b)));
        let (file, size) = rewrite(&self.path, records)?;
        self.file = Some(file);
        self.file_bytes = size;
        self.rewritten_bytes = size;
        Ok(())
    }

    /// Writes a batch of records (already applied to the live records);
    /// rewrites the file instead when it would be mostly garbage, or when a
    /// write failed (at most every `retry_after`, unless `force`).
    fn write(&mut self, records: &[u8], force: bool) {
        if self.file.is_none() {
            return;
        }
        let grown = self.file_bytes + records.len() as u64;
        let result = match self.failed_at {
            Some(at) if !force && at.elapsed() < self.shared.retry_after() => return,
            Some(_) => self.rewrite(),
            None if grown > 2 * self.rewritten_bytes + REWRITE_SLACK => self.rewrite(),
            None if records.is_empty() => return,
            None => {
                #[cfg(test)]
                let failing = self.shared.fail_writes.load(Ordering::Relaxed);
                #[cfg(not(test))]
                let failing = false;
                let r = match self.file.as_mut() {
                    Some(_) if failing => {
                        Err(std::io::Error::other("no space left on device (test)"))
                    }
                    Some(file) => file.write_all(records),
                    None => Ok(()),
                };
                if r.is_ok() {
                    self.file_bytes = grown;
                }
                r
            }
        };
        match (result, self.failed_at) {
            (Ok(()), Some(_)) => {
                self.failed_at = None;
                self.shared.failing.store(false, Ordering::Relaxed);
                tracing::info!(
                    target: "mqtt_broker",
                    "Persistence file {} written again: it holds the current state.",
                    self.path.display()
                );
            }
            (Ok(()), None) => {}
            (Err(e), failed_before) => {
                self.failed_at = Some(Instant::now());
                self.shared.failing.store(true, Ordering::Relaxed);
                if failed_before.is_none() {
                    tracing::error!(
                        target: "mqtt_broker",
                        "Error saving to the persistence file {}: {}; sessions and retained messages are kept in memory, and the whole file is written again every {} s until that works.",
                        self.path.display(),
                        e,
                        self.shared.retry_after().as_secs()
                    );
                }
            }
        }
    }
}

/// The queued and in-flight messages' records by client identifier and
/// sequence number (looked up by `&str`: no key is allocated per message).
#[derive(Debug, Default)]
struct Messages {
    by_client: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
}

impl Messages {
    fn insert(&mut self, client_id: &str, seq: u64, body: Vec<u8>) {
        let per_client = match self.by_client.get_mut(client_id) {
            Some(m) => m,
            None => self.by_client.entry(client_id.to_string()).or_default(),
        };
        per_client.insert(seq, body);
    }

    fn remove(&mut self, client_id: &str, seq: u64) {
        // An emptied map stays until the session ends: the next message
        // of a busy session would allocate its key again.
        if let Some(m) = self.by_client.get_mut(client_id) {
            m.remove(&seq);
        }
    }

    fn remove_client(&mut self, client_id: &str) {
        self.by_client.remove(client_id);
    }

    fn values(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.by_client.values().flat_map(|m| m.values())
    }
}

impl Drop for FileStorage {
    /// Writes what is left, flushes the file to the disk and stops the
    /// writer thread.
    fn drop(&mut self) {
        self.submit();
        self.shared.queue().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Storage for FileStorage {
    fn load(&mut self) -> StoredState {
        self.loaded.take().unwrap_or_default()
    }

    fn save_session(&mut self, session: &StoredSession) {
        self.append(SESSION, &encode_session(session));
    }

    fn remove_session(&mut self, client_id: &str) {
        let mut body = Vec::new();
        put_str(&mut body, client_id);
        self.append(REMOVE_SESSION, &body);
    }

    fn save_message(&mut self, client_id: &str, seq: u64, delivery: &StoredDelivery) {
        let mut body = Vec::new();
        put_str(&mut body, client_id);
        body.extend_from_slice(&seq.to_be_bytes());
        encode_delivery(&mut body, delivery);
        self.append(MESSAGE, &body);
    }

    fn remove_message(&mut self, client_id: &str, seq: u64) {
        let mut body = Vec::new();
        put_str(&mut body, client_id);
        body.extend_from_slice(&seq.to_be_bytes());
        self.append(REMOVE_MESSAGE, &body);
    }

    fn save_retained(&mut self, message: &StoredMessage) {
        let mut body = Vec::new();
        encode_message(&mut body, message);
        self.append(RETAINED, &body);
    }

    fn remove_retained(&mut self, topic: &str) {
        let mut body = Vec::new();
        put_str(&mut body, topic);
        self.append(REMOVE_RETAINED, &body);
    }

    /// Hands the records to the writer thread and waits until they are
    /// written.
    fn flush(&mut self) {
        if let Some(ticket) = self.start_flush() {
            ticket.wait();
        }
    }

    /// Hands the records to the writer thread; the ticket is done when they
    /// are written.
    fn start_flush(&mut self) -> Option<FlushTicket> {
        self.submit();
        self.ticket()
    }
}

/// Writes `MAGIC` and `records` to a temporary file next to `path`,
/// flushes it, renames it over `path` and returns it open for appending,
/// with its size.
fn rewrite<'a>(
    path: &Path,
    records: impl Iterator<Item = (u8, &'a Vec<u8>)>,
) -> std::io::Result<(File, u64)> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let mut out = Vec::from(MAGIC);
    for (kind, body) in records {
        push_record(&mut out, kind, body);
    }
    let mut file = File::create(&tmp)?;
    file.write_all(&out)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok((
        OpenOptions::new().append(true).open(path)?,
        out.len() as u64,
    ))
}

fn warn_truncated(path: &Path, bytes: usize) {
    tracing::warn!(
        target: "mqtt_broker",
        "Persistence file {}: ignoring the last {} bytes, an incomplete record (the broker stopped while writing it).",
        path.display(),
        bytes
    );
}

fn push_record(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A duration as a wall-clock deadline in milliseconds since the epoch
/// (0: none).
fn put_deadline(out: &mut Vec<u8>, d: Option<Duration>) {
    let ms = d.map_or(0, |d| {
        let at = SystemTime::now() + d;
        let ms = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX).max(1)
    });
    out.extend_from_slice(&ms.to_be_bytes());
}

fn encode_session(s: &StoredSession) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, &s.client_id);
    match &s.username {
        Some(u) => {
            out.push(1);
            put_str(&mut out, u);
        }
        None => out.push(0),
    }
    out.push(s.protocol.level());
    match s.expiry {
        // Session expiry runs from the restart (the session is offline
        // then), so it is kept as a duration.
        Some(d) => {
            out.push(1);
            out.extend_from_slice(
                &u64::try_from(d.as_millis())
                    .unwrap_or(u64::MAX)
                    .to_be_bytes(),
            );
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(s.subscriptions.len() as u32).to_be_bytes());
    for (filter, o, id) in &s.subscriptions {
        put_str(&mut out, filter.as_str());
        out.extend_from_slice(&[
            o.qos.as_u8(),
            u8::from(o.no_local),
            u8::from(o.retain_as_published),
            o.retain_handling as u8,
        ]);
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(&(s.incoming_qos2.len() as u32).to_be_bytes());
    for id in &s.incoming_qos2 {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

fn decode_session(r: &mut Reader<'_>) -> Result<StoredSession, String> {
    let client_id = r.string()?;
    let username = match r.u8()? {
        0 => None,
        _ => Some(r.string()?),
    };
    let level = r.u8()?;
    let protocol = ProtocolVersion::from_level(level)
        .ok_or_else(|| format!("unknown protocol level {level}"))?;
    let expiry = match r.u8()? {
        0 => None,
        _ => Some(Duration::from_millis(r.u64()?)),
    };
    let mut subscriptions = Vec::new();
    for _ in 0..r.u32()? {
        let text = r.string()?;
        let filter =
            TopicFilter::try_from(text.as_str()).map_err(|e| format!("filter {text:?}: {e}"))?;
        let [qos, no_local, rap, rh] = r.array()?;
        let options = SubscriptionOptions {
            qos: qos_of(qos)?,
            no_local: no_local != 0,
            retain_as_published: rap != 0,
            retain_handling: match rh {
                0 => RetainHandling::SendOnSubscribe,
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                other => return Err(format!("retain handling {other}")),
            },
        };
        subscriptions.push((filter, options, r.u32()?));
    }
    let mut incoming_qos2 = Vec::new();
    for _ in 0..r.u32()? {
        incoming_qos2.push(u16::from_be_bytes(r.array()?));
    }
    Ok(StoredSession {
        client_id,
        username,
        protocol,
        expiry,
        subscriptions,
        incoming_qos2,
    })
}

fn encode_delivery(out: &mut Vec<u8>, d: &StoredDelivery) {
    out.extend_from_slice(&[d.qos.as_u8(), u8::from(d.retain), u8::from(d.released)]);
    out.extend_from_slice(&d.packet_id.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&(d.subscription_identifiers.len() as u32).to_be_bytes());
    for id in &d.subscription_identifiers {
        out.extend_from_slice(&id.to_be_bytes());
    }
    encode_message(out, &d.message);
}

fn decode_delivery(r: &mut Reader<'_>) -> Result<StoredDelivery, String> {
    let [qos, retain, released] = r.array()?;
    let packet_id = u16::from_be_bytes(r.array()?);
    let mut subscription_identifiers = Vec::new();
    for _ in 0..r.u32()? {
        subscription_identifiers.push(r.u32()?);
    }
    Ok(StoredDelivery {
        qos: qos_of(qos)?,
        retain: retain != 0,
        released: released != 0,
        packet_id: (packet_id != 0).then_some(packet_id),
        subscription_identifiers,
        message: decode_message(r)?,
    })
}

/// A message: its deadline, then itself as a 5.0 PUBLISH.
fn encode_message(out: &mut Vec<u8>, m: &StoredMessage) {
    put_deadline(out, m.expires_in);
    let mut p = Publish::new(m.topic.clone(), m.payload.clone());
    p.qos = m.qos;
    p.retain = m.retain;
    p.packet_id = (m.qos != QoS::AtMostOnce)
        .then(|| PacketId::new(1))
        .flatten();
    p.properties = m.properties.clone();
    let mut packet = BytesMut::new();
    if let Err(e) = p.encode(ProtocolVersion::V5, &mut packet) {
        // The broker only stores messages it decoded or built, which
        // encode; a message that does not is stored without properties.
        tracing::warn!(target: "mqtt_broker", "Stored message on {} without its properties: {}", m.topic.as_str(), e);
        packet.clear();
        p.properties = Default::default();
        let _ = p.encode(ProtocolVersion::V5, &mut packet);
    }
    out.extend_from_slice(&(packet.len() as u32).to_be_bytes());
    out.extend_from_slice(&packet);
}

fn decode_message(r: &mut Reader<'_>) -> Result<StoredMessage, String> {
    let deadline = r.u64()?;
    let len = r.u32()? as usize;
    let mut packet = BytesMut::from(r.take(len)?);
    let mut decoder = Decoder::with_version(ProtocolVersion::V5);
    let p = match decoder.decode(&mut packet) {
        Ok(Some(Packet::Publish(p))) if packet.is_empty() => p,
        Ok(_) => return Err("a stored message is not one PUBLISH".to_string()),
        Err(e) => return Err(format!("a stored message: {e}")),
    };
    let expires_in = (deadline != 0).then(|| {
        let at = UNIX_EPOCH + Duration::from_millis(deadline);
        at.duration_since(SystemTime::now()).unwrap_or_default()
    });
    Ok(StoredMessage {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_in,
    })
}

fn qos_of(b: u8) -> Result<QoS, String> {
    QoS::from_u8(b).ok_or_else(|| format!("QoS {b}"))
}

/// Reads a record body; every read says what was missing.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("{n} bytes expected, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests;
