//! Fencing: a session's writes carry its lease's epoch and stop when the
//! lease is gone.
//!
//! [`FencedStore`] is the store a session's actor and sync see. Before each
//! write it checks the [`Fence`] here (the lease is still held and its local
//! deadline not passed), then stamps the epoch into the session record and
//! the run, and the host id into queued events. The store adapter then
//! refuses the write if a newer epoch is stored, so even a host frozen
//! between its check and its write (`SIGSTOP`, a long GC-like pause, a
//! partition) cannot overwrite the state of the host that took over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::domain::{
    ChangeOutcome, Chat, Message, MessageMark, MessageUpdate, OutboxEvent, QuarantinedMessage,
    SessionId, StoredChat, StoredMessage, SyncRun,
};
use crate::storage::{
    ChatCommit, ChatPage, MessageCursor, Pruned, SessionRecord, Store, StoreError, StoreResult,
    WriteStats,
};

struct Inner {
    session_id: String,
    epoch: u64,
    host_id: String,
    deadline: Mutex<Instant>,
    /// Cancelled when the lease is lost or the host shuts down: the
    /// session's actor and sync stop on it.
    revoked: CancellationToken,
    /// Set when the lease is lost (taken, not renewed in time, replaced).
    /// A host's shutdown does not set it: the lease stays this host's until
    /// it is given back after the actors stopped, so what they write while
    /// stopping (a run's last step, its summary) still lands, within the
    /// deadline.
    lost: AtomicBool,
}

/// A held lease as its session sees it.
#[derive(Clone)]
pub struct Fence(Arc<Inner>);

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("session_id", &self.0.session_id)
            .field("epoch", &self.0.epoch)
            .finish()
    }
}

impl Fence {
    pub fn new(
        session_id: &str,
        epoch: u64,
        host_id: &str,
        deadline: Instant,
        revoked: CancellationToken,
    ) -> Self {
        Fence(Arc::new(Inner {
            session_id: session_id.to_owned(),
            epoch,
            host_id: host_id.to_owned(),
            deadline: Mutex::new(deadline),
            revoked,
            lost: AtomicBool::new(false),
        }))
    }

    /// A fence that never runs out (tests, tools).
    pub fn unbounded(session_id: &str, host_id: &str) -> Self {
        let far = Instant::now() + std::time::Duration::from_secs(100 * 365 * 24 * 3600);
        Self::new(session_id, 0, host_id, far, CancellationToken::new())
    }

    pub fn epoch(&self) -> u64 {
        self.0.epoch
    }

    pub fn host_id(&self) -> &str {
        &self.0.host_id
    }

    pub fn deadline(&self) -> Instant {
        *self.0.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease is held and its local deadline has not passed (a host
    /// that is stopping still holds its leases until its actors stopped).
    pub fn is_valid(&self) -> bool {
        !self.0.lost.load(Ordering::Acquire) && Instant::now() < self.deadline()
    }

    /// Fires when the lease is lost or the host stops: the session stops.
    pub fn revoked(&self) -> &CancellationToken {
        &self.0.revoked
    }

    pub(super) fn extend(&self, deadline: Instant) {
        let mut d = self.0.deadline.lock().unwrap_or_else(|p| p.into_inner());
        if deadline > *d {
            *d = deadline;
        }
    }

    /// The lease is lost: writes are refused from now on, and the session
    /// stops.
    pub(super) fn revoke(&self) {
        self.0.lost.store(true, Ordering::Release);
        self.0.revoked.cancel();
    }

    /// `Ok` while writes are allowed.
    pub fn check(&self) -> StoreResult<()> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(StoreError::Fenced(format!(
                "the lease of session {} (epoch {}) is no longer held by this host",
                self.0.session_id, self.0.epoch
            )))
        }
    }
}

/// The store as one session's actor sees it: writes checked against the
/// fence and stamped with its epoch; reads untouched.
pub struct FencedStore {
    inner: Arc<dyn Store>,
    fence: Fence,
    /// The session's metadata as JSON, stamped on its outbox events.
    metadata: Option<serde_json::Value>,
}

impl FencedStore {
    pub fn new(inner: Arc<dyn Store>, fence: Fence) -> Self {
        Self {
            inner,
            fence,
            metadata: None,
        }
    }

    /// Stamps the session's metadata (when it has any) on every outbox
    /// event written through this store, as `metadata` in the event's
    /// data: broker and webhook consumers get what WebSocket clients get.
    pub fn with_metadata(mut self, metadata: &crate::domain::Metadata) -> Self {
        self.metadata =
            (!metadata.is_empty()).then(|| serde_json::to_value(metadata).unwrap_or_default());
        self
    }

    fn run(&self, run: &SyncRun) -> StoreResult<SyncRun> {
        self.fence.check()?;
        let mut run = run.clone();
        run.epoch = self.fence.epoch();
        Ok(run)
    }

    fn event(&self, ev: &OutboxEvent) -> OutboxEvent {
        let mut ev = ev.clone();
        if let Some(data) = ev.data.as_object_mut() {
            data.entry("hostId")
                .or_insert_with(|| self.fence.host_id().into());
            if let Some(m) = &self.metadata {
                data.entry("metadata").or_insert_with(|| m.clone());
            }
        }
        ev
    }
}

#[async_trait]
impl Store for FencedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn group_messages(&self) -> Option<usize> {
        self.inner.group_messages()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn put_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        self.fence.check()?;
        let mut rec = rec.clone();
        rec.epoch = self.fence.epoch();
        self.inner.put_session(&rec).await
    }

    async fn get_session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>> {
        self.inner.get_session(id).await
    }

    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        self.inner.list_sessions().await
    }

    async fn delete_session(&self, id: &SessionId, purge: bool) -> StoreResult<()> {
        self.fence.check()?;
        self.inner.delete_session(id, purge).await
    }

    async fn upsert_chats(&self, id: &SessionId, chats: &[Chat]) -> StoreResult<()> {
        self.fence.check()?;
        self.inner
            .upsert_chats_fenced(id, chats, self.fence.epoch())
            .await
    }

    async fn upsert_chats_fenced(
        &self,
        id: &SessionId,
        chats: &[Chat],
        _epoch: u64,
    ) -> StoreResult<()> {
        // This store's own lease decides, whatever the caller passed.
        self.upsert_chats(id, chats).await
    }

    async fn commit_chats(
        &self,
        id: &SessionId,
        chats: &[ChatCommit],
        run: &SyncRun,
    ) -> StoreResult<Vec<WriteStats>> {
        let run = self.run(run)?;
        self.inner.commit_chats(id, chats, &run).await
    }

    async fn put_messages(&self, id: &SessionId, messages: &[Message]) -> StoreResult<WriteStats> {
        self.fence.check()?;
        self.inner
            .put_messages_fenced(id, messages, self.fence.epoch())
            .await
    }

    async fn put_messages_fenced(
        &self,
        id: &SessionId,
        messages: &[Message],
        _epoch: u64,
    ) -> StoreResult<WriteStats> {
        // This store's own lease decides, whatever the caller passed.
        self.put_messages(id, messages).await
    }

    async fn list_chats(
        &self,
        id: &SessionId,
        limit: u32,
        cursor: Option<&str>,
    ) -> StoreResult<ChatPage> {
        self.inner.list_chats(id, limit, cursor).await
    }

    async fn get_chat(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<StoredChat>> {
        self.inner.get_chat(id, chat_id).await
    }

    async fn list_messages(
        &self,
        id: &SessionId,
        chat_id: &str,
        limit: u32,
        before: Option<&MessageCursor>,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.inner.list_messages(id, chat_id, limit, before).await
    }

    async fn count_messages(&self, id: &SessionId, chat_id: Option<&str>) -> StoreResult<u64> {
        self.inner.count_messages(id, chat_id).await
    }

    async fn get_message(
        &self,
        id: &SessionId,
        message_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        self.inner.get_message(id, message_id).await
    }

    async fn message_marks(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, MessageMark>> {
        self.inner.message_marks(id, chat_ids).await
    }

    async fn oldest_mark(&self, id: &SessionId, chat_id: &str) -> StoreResult<Option<MessageMark>> {
        self.inner.oldest_mark(id, chat_id).await
    }

    async fn newest_message_times(
        &self,
        id: &SessionId,
        chat_ids: &[String],
    ) -> StoreResult<HashMap<String, i64>> {
        self.inner.newest_message_times(id, chat_ids).await
    }

    async fn apply_changes(
        &self,
        id: &SessionId,
        updates: &[MessageUpdate],
        keep_revoked_bodies: bool,
    ) -> StoreResult<Vec<ChangeOutcome>> {
        self.fence.check()?;
        self.inner
            .apply_changes(id, updates, keep_revoked_bodies)
            .await
    }

    async fn prune_pending_changes(&self, before: i64) -> StoreResult<u64> {
        self.inner.prune_pending_changes(before).await
    }

    async fn upsert_contacts(
        &self,
        id: &SessionId,
        contacts: &[crate::domain::Contact],
    ) -> StoreResult<()> {
        self.fence.check()?;
        self.inner.upsert_contacts(id, contacts).await
    }

    async fn list_contacts(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<crate::domain::StoredContact>> {
        self.inner.list_contacts(id, limit, after).await
    }

    async fn find_contact(
        &self,
        id: &SessionId,
        contact_id: &str,
    ) -> StoreResult<Option<crate::domain::StoredContact>> {
        self.inner.find_contact(id, contact_id).await
    }

    async fn count_contacts(&self, id: &SessionId) -> StoreResult<u64> {
        self.inner.count_contacts(id).await
    }

    async fn put_participants(
        &self,
        id: &SessionId,
        groups: &[crate::domain::GroupParticipants],
    ) -> StoreResult<()> {
        self.fence.check()?;
        self.inner.put_participants(id, groups).await
    }

    async fn put_sync_run(&self, run: &SyncRun) -> StoreResult<()> {
        let run = self.run(run)?;
        self.inner.put_sync_run(&run).await
    }

    async fn get_sync_run(&self, sync_id: &str) -> StoreResult<Option<SyncRun>> {
        self.inner.get_sync_run(sync_id).await
    }

    async fn latest_sync_run(&self, id: &SessionId) -> StoreResult<Option<SyncRun>> {
        self.inner.latest_sync_run(id).await
    }

    async fn finish_sync(&self, run: &SyncRun, events: &[OutboxEvent]) -> StoreResult<()> {
        let run = self.run(run)?;
        let events: Vec<OutboxEvent> = events.iter().map(|e| self.event(e)).collect();
        self.inner.finish_sync(&run, &events).await
    }

    async fn enqueue_event(&self, event: &OutboxEvent) -> StoreResult<()> {
        self.fence.check()?;
        self.inner.enqueue_event(&self.event(event)).await
    }

    async fn pending_events(&self, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        self.inner.pending_events(limit).await
    }

    async fn claim_events(
        &self,
        claimer: &str,
        limit: u32,
        claim_ms: i64,
    ) -> StoreResult<Vec<OutboxEvent>> {
        self.inner.claim_events(claimer, limit, claim_ms).await
    }

    async fn count_pending_events(&self) -> StoreResult<u64> {
        self.inner.count_pending_events().await
    }

    async fn mark_published(&self, event_ids: &[String], at: i64) -> StoreResult<()> {
        self.inner.mark_published(event_ids, at).await
    }

    async fn record_attempt(&self, event_ids: &[String]) -> StoreResult<()> {
        self.inner.record_attempt(event_ids).await
    }

    async fn session_events(&self, id: &SessionId) -> StoreResult<Vec<OutboxEvent>> {
        self.inner.session_events(id).await
    }

    async fn put_quarantine(
        &self,
        id: &SessionId,
        items: &[QuarantinedMessage],
    ) -> StoreResult<()> {
        self.fence.check()?;
        self.inner.put_quarantine(id, items).await
    }

    async fn list_quarantine(&self, id: &SessionId) -> StoreResult<Vec<QuarantinedMessage>> {
        self.inner.list_quarantine(id).await
    }

    async fn quarantine_page(
        &self,
        id: &SessionId,
        limit: u32,
        after: Option<&str>,
    ) -> StoreResult<Vec<QuarantinedMessage>> {
        self.inner.quarantine_page(id, limit, after).await
    }

    async fn clear_quarantine(&self, id: &SessionId) -> StoreResult<u64> {
        self.fence.check()?;
        self.inner.clear_quarantine(id).await
    }

    async fn prune(&self, published_before: i64, quarantined_before: i64) -> StoreResult<Pruned> {
        self.inner.prune(published_before, quarantined_before).await
    }
}
