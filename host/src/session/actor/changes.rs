//! Changes after the sync: a provider's edits, revokes, acks and reactions
//! of messages, on the live messages' path.
//!
//! An edit goes through the session's plugins as a new message would (the
//! stored message with the new text, its plugin tags cleared), so a
//! redaction applies to the new text too; a fail-closed plugin that cannot
//! vouch for it quarantines it and the stored body stays as it was; a
//! plugin that drops it, or skips its chat, drops the edit. Then the change
//! is applied in place ([`crate::storage::Store::apply_changes`]): kept in
//! the spool while the store is unreachable, behind the live messages that
//! came before it, and kept pending in the store when its message is not
//! stored yet. A change that changed the stored message goes to the room as
//! `message_updated`, and to the outbox when the broker
//! (`AMQP_PUBLISH_UPDATES`) or a webhook wants it. A pending change is
//! applied when its message is stored, and that message is announced as
//! stored (with the change); no separate `message_updated` follows.

use super::*;
use crate::domain::{ChangeOutcome, Message, MessageChange, MessageUpdate};

impl Actor {
    /// The session's `keepRevokedBodies`.
    pub(super) fn keep_revoked_bodies(&self) -> bool {
        self.opts.keep_revoked_bodies.unwrap_or(false)
    }

    /// A change the provider reported after ready.
    pub(super) async fn message_changed(&mut self, update: MessageUpdate) {
        let Some(update) = self.edit_through_plugins(update).await else {
            return;
        };
        let stored = if self.spooling() {
            Err(StoreError::Unavailable("spooling".into()))
        } else {
            self.deps
                .store
                .apply_changes(
                    &self.id,
                    std::slice::from_ref(&update),
                    self.keep_revoked_bodies(),
                )
                .await
        };
        match stored {
            Ok(outcomes) => self.announce_changes(&[update], &outcomes).await,
            Err(e) if keep_for_later(&e) => {
                tracing::warn!(error = %e, message_id = %update.message_id, "store unreachable: message change kept in the spool");
                self.spool(&[SpoolRecord::Change(Box::new(update))]);
            }
            Err(e) => {
                tracing::warn!(error = %e, message_id = %update.message_id, "could not apply a message change")
            }
        }
    }

    /// Announces the changes that changed a stored message.
    pub(super) async fn announce_changes(
        &mut self,
        updates: &[MessageUpdate],
        outcomes: &[ChangeOutcome],
    ) {
        let wanted = self
            .deps
            .events
            .wants(crate::events::MESSAGE_UPDATED, self.id.as_str());
        let mut queued = false;
        for (u, o) in updates.iter().zip(outcomes) {
            self.deps
                .metrics
                .message_changes
                .get_or_create(&crate::telemetry::OutcomeLabel {
                    outcome: match o {
                        ChangeOutcome::Applied => "applied",
                        ChangeOutcome::Unchanged => "unchanged",
                        ChangeOutcome::Pending => "pending",
                    }
                    .into(),
                })
                .inc();
            if *o != ChangeOutcome::Applied {
                continue;
            }
            let ev = ServerEvent::MessageUpdated {
                session_id: self.id.to_string(),
                chat_id: u.chat_id.clone(),
                message_id: u.message_id.clone(),
                change: u.change.clone(),
            };
            if wanted && let Ok(serde_json::Value::Object(mut frame)) = serde_json::to_value(&ev) {
                let data = frame.remove("data").unwrap_or_default();
                let event = OutboxEvent::new(crate::events::MESSAGE_UPDATED, &self.id, data);
                let stored = if self.spooling() {
                    Err(StoreError::Unavailable("spooling".into()))
                } else {
                    self.deps.store.enqueue_event(&event).await
                };
                match stored {
                    Ok(()) => queued = true,
                    Err(e) if keep_for_later(&e) => {
                        self.spool(&[SpoolRecord::Event(Box::new(event))]);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not queue message_updated"),
                }
            }
            self.emit(ev);
        }
        if queued {
            self.deps.relay.kick();
        }
    }

    /// A live message as the store holds it after its write: with the
    /// changes that waited for it applied (read back only then), and its
    /// `message_received` event rebuilt to match.
    pub(super) async fn as_stored(
        &self,
        message: Message,
        event: Option<OutboxEvent>,
        stats: &crate::storage::WriteStats,
    ) -> (Message, Option<OutboxEvent>) {
        if stats.changes_applied == 0 {
            return (message, event);
        }
        let Ok(Some(stored)) = self.deps.store.get_message(&self.id, &message.id).await else {
            return (message, event);
        };
        let event = event.map(|_| {
            OutboxEvent::new(
                crate::events::MESSAGE_RECEIVED,
                &self.id,
                serde_json::json!({"sessionId": self.id.as_str(), "message": stored.message}),
            )
        });
        (stored.message, event)
    }

    /// Runs an edit's new text through the session's plugins; `None` when
    /// the edit is not to be stored (dropped, its chat skipped, or
    /// quarantined by a fail-closed plugin).
    async fn edit_through_plugins(&mut self, update: MessageUpdate) -> Option<MessageUpdate> {
        let MessageChange::Edit { body, at } = &update.change else {
            return Some(update);
        };
        let chain = self.deps.plugins.chain();
        if chain.is_empty() {
            return Some(update);
        }
        let at = *at;
        // The stored message with the new text, as a new message would come
        // (a stand-in when the message is not stored yet).
        let mut edited = match self
            .deps
            .store
            .get_message(&self.id, &update.message_id)
            .await
        {
            Ok(Some(stored)) => stored.message,
            _ => Message {
                id: update.message_id.clone(),
                chat_id: update.chat_id.clone(),
                from: update.chat_id.clone(),
                to: String::new(),
                author: None,
                body: None,
                kind: "chat".into(),
                timestamp: at,
                from_me: false,
                has_media: false,
                ack: 0,
                quoted_id: None,
                tags: vec![],
                attributes: Default::default(),
                changes: Default::default(),
            },
        };
        edited.body = body.clone();
        edited.tags.clear();
        edited.attributes.clear();
        let chat = match self.deps.store.get_chat(&self.id, &update.chat_id).await {
            Ok(Some(c)) => c.chat,
            _ => crate::domain::Chat {
                id: update.chat_id.clone(),
                name: None,
                is_group: false,
                unread_count: 0,
                archived: false,
                pinned: false,
                last_message_at: None,
            },
        };
        let ctx = SyncContext {
            session_id: self.id.to_string(),
            sync_id: String::new(),
            trigger: "live".into(),
        };
        let mut scope = chain.chat_scope(&ctx, &chat).await;
        if let ChatDecision::Skip { .. } = scope.before_chat_sync().await {
            return None;
        }
        let out = scope.transform(vec![edited]).await;
        drop(scope);
        if !out.quarantined.is_empty() {
            tracing::warn!(message_id = %update.message_id, "an edit was quarantined: the stored body stays");
            self.quarantine_live(&out.quarantined).await;
            return None;
        }
        let kept = out.keep.into_iter().next()?;
        Some(MessageUpdate {
            change: MessageChange::Edit {
                body: kept.body,
                at,
            },
            ..update
        })
    }
}
