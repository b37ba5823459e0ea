//! One serialized event, shared by every client it goes to.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::domain::{Metadata, ServerEvent};

/// One serialized event on its way to a client.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The session the event belongs to (`None`: connection-level).
    pub session: Option<Arc<str>>,
    /// Progress frames may be coalesced.
    pub progress: bool,
    pub text: Arc<str>,
    /// `text` as the payload every WebSocket writes: built (and checked as
    /// UTF-8) once per event, so a client's copy is a reference count.
    wire: Utf8Bytes,
    /// When the event was published: delivery latency is measured from here.
    pub published: std::time::Instant,
}

impl Frame {
    pub(super) fn build(session: Option<Arc<str>>, progress: bool, text: Arc<str>) -> Self {
        let wire = Utf8Bytes::try_from(bytes::Bytes::from_owner(SharedText(text.clone())))
            .unwrap_or_else(|_| Utf8Bytes::from(text.as_ref()));
        Self {
            session,
            progress,
            text,
            wire,
            published: std::time::Instant::now(),
        }
    }

    pub fn new(session: Option<&str>, event: &ServerEvent) -> Self {
        Self::build(
            session.map(Arc::from),
            event.is_progress(),
            Arc::from(event.to_frame()),
        )
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
        Self::build(
            Some(Arc::from(session)),
            event.is_progress(),
            Arc::from(text),
        )
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
        self.wire.clone().into()
    }

    /// The text as a WebSocket payload (no copy, no check per client).
    pub fn payload(&self) -> Utf8Bytes {
        self.wire.clone()
    }
}
