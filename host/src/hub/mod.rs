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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::domain::{Metadata, ServerEvent};

mod frame;
mod queue;
#[cfg(test)]
mod tests;

pub use frame::Frame;
pub use queue::{ClientQueue, QueueLimits};

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
        Ok(Arc::new(ClientQueue::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            self.limits.clone(),
        )))
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
        let frame = Frame::build(Some(Arc::from(session)), progress, text);
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
