//! Writes a storage finishes on another thread: [`WriteProgress`] (the
//! storage's side) and [`FlushTicket`] (what bytes wait for).
//!
//! A storage that writes on its own thread (as `FileStorage` does) numbers
//! the batches it hands that thread, and reports each one done with
//! [`WriteProgress::done_up_to`]. [`crate::Storage::start_flush`] returns a
//! ticket for the last batch; the driver's bytes wait for it
//! ([`crate::Transmit`]) outside the broker's lock. Only `std` is used: the
//! ticket is a [`Future`] for async drivers and has a blocking
//! [`FlushTicket::wait`] for threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// How far a storage's background writer has got; shared between the
/// storage and its writer thread.
#[derive(Debug, Default)]
pub struct WriteProgress {
    state: Mutex<ProgressState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct ProgressState {
    /// Every batch up to this number is written.
    written: u64,
    /// Tasks waiting for a batch: its number and their waker.
    wakers: Vec<(u64, Waker)>,
}

impl WriteProgress {
    /// Nothing written yet (batch numbers start at 1).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> MutexGuard<'_, ProgressState> {
        // A writer that panicked must not poison every waiting connection.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ticket that is done once batch `batch` is written.
    pub fn ticket(self: &Arc<Self>, batch: u64) -> FlushTicket {
        FlushTicket {
            progress: self.clone(),
            batch,
        }
    }

    /// Batches up to `batch` are written (or failed and were reported):
    /// wakes whoever waits for them.
    pub fn done_up_to(&self, batch: u64) {
        let ready: Vec<Waker> = {
            let mut st = self.state();
            st.written = st.written.max(batch);
            let written = st.written;
            let (ready, waiting) = std::mem::take(&mut st.wakers)
                .into_iter()
                .partition(|(b, _)| *b <= written);
            st.wakers = waiting;
            ready.into_iter().map(|(_, w)| w).collect()
        };
        self.done.notify_all();
        for w in ready {
            w.wake();
        }
    }

    /// The last batch written.
    pub fn written(&self) -> u64 {
        self.state().written
    }
}

/// A storage write in progress on another thread. Bytes that depend on it
/// go out once it is done: `.await` it, or [`FlushTicket::wait`].
#[derive(Debug, Clone)]
pub struct FlushTicket {
    progress: Arc<WriteProgress>,
    batch: u64,
}

impl FlushTicket {
    /// Whether the write is done.
    pub fn is_done(&self) -> bool {
        self.progress.state().written >= self.batch
    }

    /// Blocks the thread until the write is done.
    pub fn wait(&self) {
        let mut st = self.progress.state();
        while st.written < self.batch {
            st = self
                .progress
                .done
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Future for FlushTicket {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.progress.state();
        if st.written >= self.batch {
            return Poll::Ready(());
        }
        match st
            .wakers
            .iter_mut()
            .find(|(b, w)| *b == self.batch && w.will_wake(cx.waker()))
        {
            Some(_) => {}
            None => st.wakers.push((self.batch, cx.waker().clone())),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_ticket_is_done_when_its_batch_or_a_later_one_is_written() {
        let p = WriteProgress::new();
        let t1 = p.ticket(1);
        let t2 = p.ticket(2);
        assert!(!t1.is_done() && !t2.is_done());
        p.done_up_to(1);
        assert!(t1.is_done() && !t2.is_done());
        p.done_up_to(3);
        assert!(t2.is_done());
        // Never backwards.
        p.done_up_to(1);
        assert_eq!(p.written(), 3);
    }

    #[test]
    fn wait_blocks_until_another_thread_reports_the_batch() {
        let p = WriteProgress::new();
        let t = p.ticket(1);
        let writer = {
            let p = p.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                p.done_up_to(1);
            })
        };
        t.wait();
        assert!(t.is_done());
        writer.join().unwrap();
    }

    #[test]
    fn a_polled_ticket_is_woken_by_the_writer() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let p = WriteProgress::new();
        let mut t = p.ticket(2);
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut t).poll(&mut cx).is_pending());
        // Polled again: one waker kept, not two.
        assert!(Pin::new(&mut t).poll(&mut cx).is_pending());
        p.done_up_to(1);
        assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
        p.done_up_to(2);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(Pin::new(&mut t).poll(&mut cx).is_ready());
    }
}
