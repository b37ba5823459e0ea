//! A client's bounded outbound queue: progress coalescing, close reason.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Frame;

/// Bounds for one client.
#[derive(Debug, Clone)]
pub struct QueueLimits {
    /// Rooms (sessions) one client may be in at once.
    pub max_rooms: usize,
    /// Frames waiting for one client before it is disconnected.
    pub max_frames: usize,
    /// Backlog from which progress frames are coalesced. Below it a client
    /// is keeping up and gets every event, bursts included.
    pub coalesce_after: usize,
    /// How long one frame may take to send before the client is considered
    /// stuck and disconnected.
    pub stall_timeout: std::time::Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_rooms: 100,
            max_frames: 4096,
            coalesce_after: 64,
            stall_timeout: std::time::Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
pub(super) struct Inner {
    frames: VecDeque<Frame>,
    pub(super) sessions: HashSet<String>,
    coalesced: u64,
}

/// A client's outbound queue.
pub struct ClientQueue {
    pub(super) id: u64,
    inner: Mutex<Inner>,
    notify: Notify,
    /// Set with `closed`, read on every push and pop (the token's own check
    /// takes a lock).
    is_closed: AtomicBool,
    closed: CancellationToken,
    close_reason: Mutex<Option<String>>,
    limits: QueueLimits,
}

impl std::fmt::Debug for ClientQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientQueue").field("id", &self.id).finish()
    }
}

impl ClientQueue {
    pub(super) fn new(id: u64, limits: QueueLimits) -> Self {
        Self {
            id,
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            is_closed: AtomicBool::new(false),
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            limits,
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame without waiting.
    pub fn push(&self, frame: Frame) {
        if self.is_closed() {
            return;
        }
        let overflow = {
            let mut inner = self.lock();
            let replaced = frame.progress
                && inner.frames.len() >= self.limits.coalesce_after
                && match inner
                    .frames
                    .iter_mut()
                    .rev()
                    .find(|f| f.session == frame.session)
                {
                    // Only the session's newest queued frame may be replaced,
                    // and only by its own kind, so order is preserved.
                    Some(last) if last.progress => {
                        *last = frame.clone();
                        true
                    }
                    _ => false,
                };
            if replaced {
                inner.coalesced += 1;
                false
            } else {
                inner.frames.push_back(frame);
                inner.frames.len() > self.limits.max_frames
            }
        };
        if overflow {
            self.close("send queue overflow: client too slow");
        } else {
            self.notify.notify_one();
        }
    }

    /// The next frame to send; `None` once the client is closed.
    pub async fn next(&self) -> Option<Frame> {
        loop {
            if let Some(f) = self.try_next() {
                return Some(f);
            }
            if self.is_closed() {
                return None;
            }
            // Registered before the second look, so a push in between
            // still wakes us.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(f) = self.try_next() {
                return Some(f);
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => return None,
            }
        }
    }

    /// The next frame if one is queued, without waiting: the writer drains
    /// what piled up behind the frame it woke for and flushes them together.
    pub fn try_next(&self) -> Option<Frame> {
        if self.is_closed() {
            return None;
        }
        self.lock().frames.pop_front()
    }

    /// Moves up to `max` queued frames into `out`, in order, under one lock;
    /// returns how many.
    pub fn drain_into(&self, out: &mut Vec<Frame>, max: usize) -> usize {
        if self.is_closed() {
            return 0;
        }
        let mut inner = self.lock();
        let n = inner.frames.len().min(max);
        out.extend(inner.frames.drain(..n));
        n
    }

    /// Whether the client is closed (see [`ClientQueue::close`]).
    pub fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    /// Marks the client closed; the connection task sends `reason` as the
    /// close frame's reason and ends.
    pub fn close(&self, reason: &str) {
        let mut r = self.close_reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.to_owned());
        }
        self.is_closed.store(true, Ordering::Release);
        self.closed.cancel();
    }

    pub fn close_reason(&self) -> Option<String> {
        self.close_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    /// Progress frames replaced so far (for tests and metrics).
    pub fn coalesced(&self) -> u64 {
        self.lock().coalesced
    }

    pub fn is_joined(&self, session: &str) -> bool {
        self.lock().sessions.contains(session)
    }
}
