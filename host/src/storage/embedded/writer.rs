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

/// The sending end of the writer thread's queue. The thread ends once the
/// last `Writer` is dropped and the queue is empty.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the thread.
    pub(super) fn start() -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
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
        Ok(Self { jobs })
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
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| StoreError::Unavailable("store closed".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store task failed: the write panicked".into()))?
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
