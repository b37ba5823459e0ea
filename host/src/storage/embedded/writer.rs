//! The embedded store's writer: one thread of its own that runs every write
//! call in turn, rather than the runtime's pool of blocking threads.
//!
//! redb runs one write transaction at a time anyway, so a second thread
//! would only wait in `begin_write`. What one thread adds is memory: the
//! allocator keeps a heap per thread, and a write's buffers (redb's pages,
//! encoded records) spread over whichever pool threads the calls landed
//! on were freed into heaps that the next call might not use again. A sync
//! of 1M messages in 10,000 chats peaked at 52–58 MiB that way and at 41–42
//! MiB with the writes on one thread (BENCHMARKS.md, P5).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use crate::storage::{StoreError, StoreResult};

type Job = Box<dyn FnOnce() + Send>;

/// The sending end of the writer thread's queue, and the thread. Dropping
/// the `Writer` (with the store) closes the queue and waits for the thread
/// to finish what is queued, so a write that a caller gave up on (a sync
/// stopped by the host's shutdown) completes and the database is closed
/// before the host's `stop` returns and the process exits, as it did when
/// the runtime's blocking pool ran the writes.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread.
    pub(super) fn start() -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("wasync-store-writer".into())
            .spawn(move || {
                for job in queue {
                    // A call that panics fails alone (its caller's answer
                    // is dropped, which it reads as a failed task); the
                    // thread goes on with the next.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store's writer: {e}"))
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the writer thread after the calls queued before it and
    /// returns its result. `f` runs even if the caller stops waiting.
    pub(super) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store closed".into()))?
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store task failed: the write panicked".into()))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            // Never the case (a job holds the database, not the store), but
            // a thread cannot wait for itself.
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_in_order_on_one_thread() {
        let w = Writer::start().unwrap();
        let mut names = Vec::new();
        for i in 0..5 {
            let (n, name) = w
                .run(move || Ok((i, std::thread::current().name().map(str::to_owned))))
                .await
                .unwrap();
            assert_eq!(n, i);
            names.push(name);
        }
        assert!(
            names
                .iter()
                .all(|n| n.as_deref() == Some("wasync-store-writer"))
        );
    }

    #[tokio::test]
    async fn a_call_that_panics_fails_alone() {
        let w = Writer::start().unwrap();
        let err = w
            .run(|| -> StoreResult<()> { panic!("boom") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("store task failed"), "{err}");
        assert_eq!(w.run(|| Ok(7)).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn dropping_the_writer_waits_for_what_is_queued() {
        let w = Writer::start().unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let call = w.run(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        // Queued, then given up on, then the writer goes: its drop returns
        // only once the call has run.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), call).await;
        drop(w);
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_call_runs_even_if_its_caller_gives_up() {
        let w = Writer::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let call = w.run(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            tx.send(()).unwrap();
            Ok(())
        });
        // Polled once (queued), then dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), call).await;
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    }
}
