//! Fan-out of session events to connected clients.
//!
//! Each connected client (a `/ws` socket) owns a bounded [`ClientQueue`];
//! publishing never waits on a client. A slow client's queue absorbs the
//! difference: a new `sync_chats` event replaces that session's progress
//! event still waiting in the queue (latest wins), lifecycle events are
//! never dropped, and a client whose queue overflows anyway, or whose
//! socket stops accepting frames, is disconnected with a close reason. So
//! one stuck browser tab can neither slow the sync nor other clients.
//!
//! The hub also holds the host's two counts a crowd of clients could
//! otherwise grow without end: connected clients (`/ws` and Socket.IO
//! together, [`Hub::connect`] refuses past the cap) and the rooms one client
//! is in ([`Hub::join`] refuses past [`QueueLimits::max_rooms`]).
//!
//! Every event is serialized once per publish and shared by all clients.
//! Session events carry the `hostId` of the host whose session produced
//! them. A [`HubRelay`] (the cluster's event fabric) sees every event
//! published here, to pass it to the other hosts, and feeds the events of
//! sessions run elsewhere in through [`Hub::publish_remote`], so a client
//! connected to any host sees the same sequence.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::{Metadata, ServerEvent};

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

/// One serialized event on its way to a client.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The session the event belongs to (`None`: connection-level).
    pub session: Option<Arc<str>>,
    /// Progress frames may be coalesced.
    pub progress: bool,
    pub text: Arc<str>,
    /// When the event was published: delivery latency is measured from here.
    pub published: std::time::Instant,
}

impl Frame {
    pub fn new(session: Option<&str>, event: &ServerEvent) -> Self {
        Self {
            session: session.map(Arc::from),
            progress: event.is_progress(),
            text: Arc::from(event.to_frame()),
            published: std::time::Instant::now(),
        }
    }

    /// A session event stamped with the host that produced it and the
    /// session's metadata.
    pub fn from_host(
        session: &str,
        event: &ServerEvent,
        host_id: Option<&str>,
        metadata: Option<&Metadata>,
    ) -> Self {
        let text = event.to_frame_with(host_id, metadata);
        Self {
            session: Some(Arc::from(session)),
            progress: event.is_progress(),
            text: Arc::from(text),
            published: std::time::Instant::now(),
        }
    }
}

/// A frame's text as the bytes every client's socket writes: one buffer,
/// shared, never copied per client.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Frame {
    /// The text as shared bytes (no copy).
    pub fn bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from_owner(SharedText(self.text.clone()))
    }
}

/// What the hub refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// The host serves its most clients already.
    #[error("this host serves its maximum of {max} live-event clients")]
    TooManyClients { max: usize },
    /// The client is in its most rooms already.
    #[error("a client may join at most {max} sessions; leave one first")]
    TooManyRooms { max: usize },
}

/// Sees what the hub publishes, for other hosts (the cluster's event
/// fabric).
pub trait HubRelay: Send + Sync + 'static {
    /// A session event published on this host.
    fn published(&self, session: &str, frame: &Frame);
    /// The last local client left `session`'s room.
    fn room_closed(&self, session: &str);
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Frame>,
    sessions: HashSet<String>,
    coalesced: u64,
}

/// A client's outbound queue.
pub struct ClientQueue {
    id: u64,
    inner: Mutex<Inner>,
    notify: Notify,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame without waiting.
    pub fn push(&self, frame: Frame) {
        if self.closed.is_cancelled() {
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
            if self.closed.is_cancelled() {
                return None;
            }
            let notified = self.notify.notified();
            if let Some(f) = self.lock().frames.pop_front() {
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
        if self.closed.is_cancelled() {
            return None;
        }
        self.lock().frames.pop_front()
    }

    /// Marks the client closed; the connection task sends `reason` as the
    /// close frame's reason and ends.
    pub fn close(&self, reason: &str) {
        let mut r = self.close_reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason.to_owned());
        }
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

/// The rooms: session id → clients that joined it.
pub struct Hub {
    rooms: Mutex<HashMap<String, HashMap<u64, Arc<ClientQueue>>>>,
    next_id: AtomicU64,
    clients: AtomicU64,
    /// Most clients connected at once.
    max_clients: u64,
    limits: QueueLimits,
    host_id: Option<Arc<str>>,
    relay: OnceLock<Arc<dyn HubRelay>>,
    /// The metadata of this host's sessions that have any, echoed in
    /// their events.
    metadata: Mutex<HashMap<String, Arc<Metadata>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients.load(Ordering::Relaxed))
            .finish()
    }
}

impl Hub {
    /// A hub without a client cap (see [`Hub::with_max_clients`]).
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            rooms: Mutex::default(),
            next_id: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            max_clients: u64::MAX,
            limits,
            host_id: None,
            relay: OnceLock::new(),
            metadata: Mutex::default(),
        }
    }

    /// Refuses clients past `max` connected at once.
    pub fn with_max_clients(mut self, max: usize) -> Self {
        self.max_clients = max as u64;
        self
    }

    /// Most clients connected at once.
    pub fn max_clients(&self) -> usize {
        usize::try_from(self.max_clients).unwrap_or(usize::MAX)
    }

    /// Whether a new client would be refused now (a hint for refusing a
    /// handshake early; [`Hub::connect`] decides).
    pub fn is_full(&self) -> bool {
        self.clients.load(Ordering::Relaxed) >= self.max_clients
    }

    /// Stamps session events with `host_id`.
    pub fn with_host_id(mut self, host_id: &str) -> Self {
        self.host_id = Some(Arc::from(host_id));
        self
    }

    /// Installs the relay (once; later calls are ignored).
    pub fn set_relay(&self, relay: Arc<dyn HubRelay>) {
        let _ = self.relay.set(relay);
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Arc<ClientQueue>>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new client with an empty queue, unless the host serves its most
    /// clients already. Every client connected is given back with
    /// [`Hub::disconnect`], which frees its slot.
    pub fn connect(&self) -> Result<Arc<ClientQueue>, HubError> {
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_clients).then_some(n + 1)
            })
            .map_err(|_| HubError::TooManyClients {
                max: self.max_clients(),
            })?;
        Ok(Arc::new(ClientQueue {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
            limits: self.limits.clone(),
        }))
    }

    /// Whether `client` may join `session`: it is in fewer rooms than its
    /// cap, or already in this one (a re-join only refreshes the snapshot).
    pub fn may_join(&self, client: &ClientQueue, session: &str) -> Result<(), HubError> {
        let inner = client.lock();
        if inner.sessions.len() < self.limits.max_rooms || inner.sessions.contains(session) {
            Ok(())
        } else {
            Err(HubError::TooManyRooms {
                max: self.limits.max_rooms,
            })
        }
    }

    /// Joins `client` to `session`'s room, unless it is in its most rooms
    /// already. The snapshot is taken and queued while publishers are held
    /// off, so the client sees the snapshot and then every later event:
    /// nothing in between is missed.
    pub fn join(
        &self,
        client: &Arc<ClientQueue>,
        session: &str,
        snapshot: impl FnOnce() -> ServerEvent,
    ) -> Result<(), HubError> {
        let mut rooms = self.rooms();
        if let Err(e) = self.may_join(client, session) {
            // The caller may have bound the session for this join (the
            // cluster's fabric); with no room to keep, let the relay unbind.
            let unused = !rooms.contains_key(session);
            drop(rooms);
            if unused && let Some(r) = self.relay.get() {
                r.room_closed(session);
            }
            return Err(e);
        }
        client.push(Frame::from_host(
            session,
            &snapshot(),
            self.host_id.as_deref(),
            self.metadata_of(session).as_deref(),
        ));
        rooms
            .entry(session.to_owned())
            .or_default()
            .insert(client.id, client.clone());
        client.lock().sessions.insert(session.to_owned());
        Ok(())
    }

    /// Leaves one room; returns whether the client was in it.
    pub fn leave(&self, client: &ClientQueue, session: &str) -> bool {
        let mut rooms = self.rooms();
        let mut closed = false;
        if let Some(room) = rooms.get_mut(session) {
            room.remove(&client.id);
            if room.is_empty() {
                rooms.remove(session);
                closed = true;
            }
        }
        drop(rooms);
        if closed && let Some(r) = self.relay.get() {
            r.room_closed(session);
        }
        client.lock().sessions.remove(session)
    }

    /// Removes the client from every room.
    pub fn disconnect(&self, client: &ClientQueue) {
        let sessions: Vec<String> = client.lock().sessions.drain().collect();
        let mut rooms = self.rooms();
        let mut closed = Vec::new();
        for s in sessions {
            if let Some(room) = rooms.get_mut(&s) {
                room.remove(&client.id);
                if room.is_empty() {
                    rooms.remove(&s);
                    closed.push(s);
                }
            }
        }
        drop(rooms);
        if let Some(r) = self.relay.get() {
            for s in closed {
                r.room_closed(&s);
            }
        }
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// Stamps `metadata` on `session`'s events from now on (nothing when
    /// it is empty). Returns the registration for [`Hub::forget_metadata`].
    pub fn set_metadata(&self, session: &str, metadata: &Metadata) -> Option<Arc<Metadata>> {
        if metadata.is_empty() {
            return None;
        }
        let m = Arc::new(metadata.clone());
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session.to_owned(), m.clone());
        Some(m)
    }

    /// Stops stamping `registered` on `session`'s events, unless a newer
    /// registration (a session created again) replaced it.
    pub fn forget_metadata(&self, session: &str, registered: &Arc<Metadata>) {
        let mut map = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(session).is_some_and(|m| Arc::ptr_eq(m, registered)) {
            map.remove(session);
        }
    }

    fn metadata_of(&self, session: &str) -> Option<Arc<Metadata>> {
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session)
            .cloned()
    }

    /// Sends `event` to every client in `session`'s room, without waiting,
    /// and to the relay.
    pub fn publish(&self, session: &str, event: &ServerEvent) {
        let relay = self.relay.get();
        let rooms = self.rooms();
        let room = rooms.get(session);
        if room.is_none() && relay.is_none() {
            return;
        }
        let metadata = self.metadata_of(session);
        let frame = Frame::from_host(session, event, self.host_id.as_deref(), metadata.as_deref());
        if let Some(room) = room {
            for client in room.values() {
                client.push(frame.clone());
            }
        }
        drop(rooms);
        if let Some(r) = relay {
            r.published(session, &frame);
        }
    }

    /// Sends a frame another host published to this host's clients of
    /// `session` (not to the relay).
    pub fn publish_remote(&self, session: &str, text: Arc<str>, progress: bool) {
        let rooms = self.rooms();
        let Some(room) = rooms.get(session) else {
            return;
        };
        let frame = Frame {
            session: Some(Arc::from(session)),
            progress,
            text,
            published: std::time::Instant::now(),
        };
        for client in room.values() {
            client.push(frame.clone());
        }
    }

    /// Connected clients.
    pub fn client_count(&self) -> u64 {
        self.clients.load(Ordering::Relaxed)
    }

    /// Clients in a session's room.
    pub fn room_size(&self, session: &str) -> usize {
        self.rooms().get(session).map_or(0, |r| r.len())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_client_writes_the_one_serialized_buffer() {
        let f = Frame::new(Some("s"), &ServerEvent::Pong {});
        let (a, b) = (f.clone().bytes(), f.bytes());
        assert_eq!(a.as_ptr(), f.text.as_ptr(), "no copy per client");
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(&a[..], f.text.as_bytes());
    }

    use super::*;
    use crate::domain::{SyncPhase, SyncProgress};

    fn progress(seq: u64) -> ServerEvent {
        ServerEvent::SyncChats(SyncProgress {
            session_id: "s".into(),
            sync_id: "y".into(),
            seq,
            n_chats: 10,
            current_chat: seq as u32,
            chat_id: None,
            messages_synced: 0,
            total_messages_synced: 0,
            phase: SyncPhase::Chat,
            done: false,
            contacts: None,
        })
    }

    fn ready() -> ServerEvent {
        ServerEvent::Ready {
            session_id: "s".into(),
        }
    }

    fn seq_of(f: &Frame) -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(&f.text).unwrap();
        v["data"]["seq"].as_u64()
    }

    #[tokio::test]
    async fn try_next_drains_in_order_without_waiting_and_stops_at_close() {
        let hub = Hub::new(QueueLimits::default());
        let c = hub.connect().unwrap();
        hub.join(&c, "s", ready).unwrap();
        assert!(c.next().await.is_some(), "the join's snapshot");
        assert!(c.try_next().is_none(), "nothing queued: no wait");
        for i in 0..3 {
            hub.publish("s", &progress(i));
        }
        let first = c.next().await.unwrap();
        let rest: Vec<_> = std::iter::from_fn(|| c.try_next()).collect();
        assert_eq!(seq_of(&first), Some(0));
        assert_eq!(
            rest.iter().map(seq_of).collect::<Vec<_>>(),
            [Some(1), Some(2)]
        );
        hub.publish("s", &progress(3));
        c.close("bye");
        assert!(c.try_next().is_none(), "a closed client yields nothing");
    }

    #[tokio::test]
    async fn slow_client_gets_latest_progress_and_every_lifecycle_event() {
        let hub = Hub::new(QueueLimits {
            coalesce_after: 1,
            ..Default::default()
        });
        let c = hub.connect().unwrap();
        hub.join(&c, "s", ready).unwrap();
        for i in 0..100 {
            hub.publish("s", &progress(i));
        }
        hub.publish("s", &ready());
        hub.publish("s", &progress(100));
        hub.publish("s", &progress(101));
        let mut got = Vec::new();
        while let Ok(Some(f)) =
            tokio::time::timeout(std::time::Duration::from_millis(20), c.next()).await
        {
            got.push(f);
        }
        // snapshot, latest of 0..100, ready, latest of 100..102
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(seq_of(&got[1]), Some(99));
        assert!(got[2].text.contains("\"ready\""));
        assert_eq!(seq_of(&got[3]), Some(101));
        assert_eq!(c.coalesced(), 100);
    }

    #[tokio::test]
    async fn a_client_that_keeps_up_gets_every_event_of_a_burst() {
        let hub = Hub::new(QueueLimits::default());
        let c = hub.connect().unwrap();
        hub.join(&c, "s", ready).unwrap();
        for i in 0..50 {
            hub.publish("s", &progress(i));
        }
        c.next().await.unwrap();
        for i in 0..50 {
            assert_eq!(seq_of(&c.next().await.unwrap()), Some(i));
        }
        assert_eq!(c.coalesced(), 0);
    }

    #[tokio::test]
    async fn overflow_closes_the_client_with_a_reason() {
        let hub = Hub::new(QueueLimits {
            max_frames: 8,
            ..Default::default()
        });
        let c = hub.connect().unwrap();
        hub.join(&c, "s", ready).unwrap();
        for _ in 0..20 {
            hub.publish("s", &ready());
        }
        assert!(c.closed().is_cancelled());
        assert!(c.close_reason().unwrap().contains("too slow"));
        assert!(c.next().await.is_none());
    }

    #[tokio::test]
    async fn rooms_are_separate_and_leave_works() {
        let hub = Hub::new(QueueLimits::default());
        let a = hub.connect().unwrap();
        let b = hub.connect().unwrap();
        hub.join(&a, "s", ready).unwrap();
        hub.join(&b, "t", ready).unwrap();
        a.next().await.unwrap();
        b.next().await.unwrap();
        hub.publish("t", &ready());
        assert!(b.next().await.is_some());
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), a.next())
                .await
                .is_err()
        );
        assert!(hub.leave(&a, "s"));
        assert!(!hub.leave(&a, "s"));
        assert_eq!(hub.room_size("s"), 0);
        hub.disconnect(&b);
        assert_eq!(hub.room_size("t"), 0);
        assert_eq!(hub.client_count(), 1);
    }

    #[tokio::test]
    async fn clients_past_the_cap_are_refused_until_one_leaves() {
        let hub = Hub::new(QueueLimits::default()).with_max_clients(2);
        let a = hub.connect().unwrap();
        let _b = hub.connect().unwrap();
        assert!(hub.is_full());
        assert_eq!(
            hub.connect().unwrap_err(),
            HubError::TooManyClients { max: 2 }
        );
        hub.disconnect(&a);
        assert!(!hub.is_full());
        assert!(hub.connect().is_ok(), "a freed slot is usable again");
        assert!(hub.connect().is_err());
    }

    #[tokio::test]
    async fn rooms_past_the_cap_are_refused_until_one_is_left() {
        let hub = Hub::new(QueueLimits {
            max_rooms: 2,
            ..Default::default()
        });
        let c = hub.connect().unwrap();
        hub.join(&c, "a", ready).unwrap();
        hub.join(&c, "b", ready).unwrap();
        hub.join(&c, "a", ready)
            .expect("a re-join takes no new slot");
        assert_eq!(
            hub.join(&c, "c", ready).unwrap_err(),
            HubError::TooManyRooms { max: 2 }
        );
        assert_eq!(hub.room_size("c"), 0, "the refused join left no room");
        assert!(!c.is_joined("c"));
        assert!(hub.leave(&c, "a"));
        hub.join(&c, "c", ready).expect("a left room frees a slot");
        assert!(c.is_joined("c"));
    }
}
