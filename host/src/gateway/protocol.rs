//! The client → server half of the event protocol, shared by `/ws` and the
//! Socket.IO endpoint: `join-session`, `leave-session`, `ping`.

use std::sync::Arc;

use serde_json::Value;

use crate::domain::{ServerEvent, SessionId, SessionSnapshot, SessionStatus};
use crate::hub::{ClientQueue, Frame, Hub, HubError};
use crate::session::{SessionError, Sessions};

/// What the protocol needs.
#[derive(Clone)]
pub struct Protocol {
    pub sessions: Arc<Sessions>,
    pub hub: Arc<Hub>,
    /// Events of sessions run on other hosts (cluster only).
    pub fabric: Option<Arc<crate::cluster::fabric::Fabric>>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol").finish_non_exhaustive()
    }
}

pub fn error_frame(code: &str, message: impl Into<String>) -> Frame {
    Frame::new(
        None,
        &ServerEvent::Error {
            code: code.into(),
            message: message.into(),
        },
    )
}

/// A hub refusal as an `error` event; the connection stays.
fn hub_error_frame(e: &HubError) -> Frame {
    let code = match e {
        HubError::TooManyClients { .. } => "too_many_clients",
        HubError::TooManyRooms { .. } => "too_many_rooms",
    };
    error_frame(code, e.to_string())
}

impl Protocol {
    /// Handles one client event; answers (errors included) go to the
    /// client's queue.
    pub async fn handle(&self, client: &Arc<ClientQueue>, event: &str, data: Value) {
        match event {
            "ping" => client.push(Frame::new(None, &ServerEvent::Pong {})),
            "join-session" | "leave-session" => {
                // `{sessionId}` as in the original design, or a bare string.
                let raw = match &data {
                    Value::String(s) => Some(s.as_str()),
                    v => v.get("sessionId").and_then(|s| s.as_str()),
                };
                let Some(raw) = raw else {
                    client.push(error_frame(
                        "invalid_session_id",
                        format!("{event} needs data {{\"sessionId\": \"...\"}}"),
                    ));
                    return;
                };
                let id = match SessionId::parse(raw) {
                    Ok(id) => id,
                    Err(e) => {
                        client.push(error_frame(
                            "invalid_session_id",
                            format!("invalid session id: {e}"),
                        ));
                        return;
                    }
                };
                if event == "leave-session" {
                    if self.hub.leave(client, id.as_str()) {
                        client.push(Frame::new(
                            None,
                            &ServerEvent::Left {
                                session_id: id.to_string(),
                            },
                        ));
                    } else {
                        client.push(error_frame(
                            "not_joined",
                            format!("not joined to session {id}"),
                        ));
                    }
                    return;
                }
                self.join(client, &id).await;
            }
            other => client.push(error_frame(
                "unknown_event",
                format!("unknown event {other:?}; expected join-session, leave-session or ping"),
            )),
        }
    }

    async fn join(&self, client: &Arc<ClientQueue>, id: &SessionId) {
        // Checked first, so a refused join costs no read and no binding;
        // the hub checks again as it joins.
        if let Err(e) = self.hub.may_join(client, id.as_str()) {
            client.push(hub_error_frame(&e));
            return;
        }
        // A stopped session has no actor, so its stored snapshot is the state.
        let stored = if self.sessions.live_snapshot(id).is_none() {
            match self.sessions.snapshot(id).await {
                Ok(s) => Some(s),
                Err(SessionError::NotFound(_)) => {
                    client.push(error_frame(
                        "session_not_found",
                        format!(
                            "session {id} not found; create it with POST /whatsapp-web/session/{id}"
                        ),
                    ));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "join: snapshot failed");
                    client.push(error_frame(
                        "unavailable",
                        "the session cannot be read right now",
                    ));
                    return;
                }
            }
        } else {
            None
        };
        // Bound before the snapshot, so the snapshot is followed by every
        // later event of a session run on another host.
        if let Some(f) = &self.fabric {
            f.follow(id.as_str()).await;
        }
        let sessions = &self.sessions;
        let joined = self.hub.join(client, id.as_str(), || {
            // Stopped between the check and now: report it as stopped.
            let snap = sessions
                .live_snapshot(id)
                .or(stored)
                .unwrap_or_else(|| SessionSnapshot {
                    session_id: id.to_string(),
                    status: SessionStatus::Stopped,
                    provider: String::new(),
                    qr: None,
                    pairing_code: None,
                    me: None,
                    sync: None,
                    metadata: Default::default(),
                });
            ServerEvent::SessionState(snap)
        });
        if let Err(e) = joined {
            client.push(hub_error_frame(&e));
            return;
        }
        // A leave that closed the room between the bind and the join may
        // have unbound it again: a second follow re-binds (a no-op
        // otherwise).
        if let Some(f) = &self.fabric {
            f.follow(id.as_str()).await;
        }
    }
}
