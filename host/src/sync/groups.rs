//! Groups: consecutive chats committed together in one durable step, the
//! commit overlapping the next group's fetch, and the chats' events
//! reported in order once their group is durable (see the module docs of
//! [`super`]).

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{DEFAULT_GROUP_MESSAGES, Stop, StoreStop, SyncDeps, emit, retry::retry_store};
use crate::domain::{SessionId, SyncMode, SyncPhase, SyncRun};
use crate::storage::{ChatCommit, WriteStats};

/// The events of chats fetched but not yet committed.
pub(super) struct Group {
    pub(super) commits: Vec<ChatCommit>,
    /// Per chat of the group: (position, chat id, messages stored, event
    /// seqs of its `chat` and `messages` events).
    pub(super) chats: Vec<(u32, String, u64, u64, u64)>,
    pub(super) messages: usize,
    pub(super) opened: Instant,
    /// A chat of the group changed the run beyond its position (failed,
    /// skipped by a plugin): the run record must be written with it.
    pub(super) noted: bool,
}

impl Group {
    pub(super) fn new() -> Self {
        Self {
            commits: Vec::new(),
            chats: Vec::new(),
            messages: 0,
            opened: Instant::now(),
            noted: false,
        }
    }
}

/// Commits the group when it is full, old, or holds the last chat to walk
/// (`i` is the chat just added, `last` the last one the walk visits).
#[allow(clippy::too_many_arguments)]
pub(super) async fn flush_if_due(
    deps: &SyncDeps,
    sid: &SessionId,
    run: &mut SyncRun,
    group: &mut Group,
    i: usize,
    last: Option<usize>,
    shutdown: &CancellationToken,
    pending: &mut Option<InFlight>,
) -> Result<(), Stop> {
    // A commit that is done reports its chats now, not at the next flush.
    if pending.as_ref().is_some_and(|p| p.task.is_finished())
        && let Some(p) = pending.take()
    {
        finish_flush(deps, p).await?;
    }
    let limit = deps
        .options
        .group_messages
        .or_else(|| deps.store.group_messages())
        .unwrap_or(DEFAULT_GROUP_MESSAGES)
        .max(1);
    let full = group.messages >= limit;
    // A group past its window while the previous commit still runs keeps
    // filling (up to `limit`) instead of waiting for it: its chats could
    // not be reported before that commit anyway, and a store slower than
    // the provider gets larger commits, with fewer fixed costs.
    let slow = pending.is_none() && group.opened.elapsed() >= deps.options.group_window;
    if full || slow || Some(i) == last {
        if let Some(p) = pending.take() {
            finish_flush(deps, p).await?;
        }
        *pending = start_flush(deps, sid, run, group, shutdown);
        // Overlap the commit with the next fetch only when the provider
        // is fast (the group filled up); a slow provider's progress is
        // reported as soon as it is durable.
        if !full && let Some(p) = pending.take() {
            finish_flush(deps, p).await?;
        }
    }
    Ok(())
}

/// A group whose commit is under way.
pub(super) struct InFlight {
    task: tokio::task::JoinHandle<Result<WriteStats, StoreStop>>,
    chats: Vec<(u32, String, u64, u64, u64)>,
    /// The run as this commit writes it.
    run: SyncRun,
    before_total: u64,
}

/// Starts committing a group (messages, chat counters and the checkpoint
/// in one durable step) in the background.
pub(super) fn start_flush(
    deps: &SyncDeps,
    sid: &SessionId,
    run: &mut SyncRun,
    group: &mut Group,
    shutdown: &CancellationToken,
) -> Option<InFlight> {
    if group.chats.is_empty() {
        return None;
    }
    let g = std::mem::replace(group, Group::new());
    let (last_pos, last_id, ..) = g.chats.last().cloned().expect("non-empty group");
    let before_total = run.total_messages_synced;
    let added: u64 = g.chats.iter().map(|c| c.2).sum();
    // The checkpoint written with the data already counts the group, and
    // bounds which chats a resume may take as written (see
    // `SyncRun::checkpoint_synced_at`); it never goes back.
    let newest = g.commits.iter().map(|c| c.synced_at).max();
    run.checkpoint_synced_at = run.checkpoint_synced_at.max(newest);
    run.checkpoint = last_pos;
    run.checkpoint_chat_id = Some(last_id);
    run.current_chat = last_pos;
    run.total_messages_synced = before_total + added;
    let snapshot = run.clone();
    let store = deps.store.clone();
    let sid = sid.clone();
    let options = deps.options.clone();
    let shutdown = shutdown.clone();
    let commits = g.commits;
    let committed = snapshot.clone();
    // An incremental group of chats with nothing new has nothing to make
    // durable: its events go out without a write (the run record catches
    // up at the next commit or the run's end; a resume re-checks those
    // chats by their marks).
    if commits.is_empty() && !g.noted && snapshot.mode == SyncMode::Incremental {
        return Some(InFlight {
            task: tokio::spawn(async { Ok(WriteStats::default()) }),
            chats: g.chats,
            run: snapshot,
            before_total,
        });
    }
    let task = tokio::spawn(async move {
        retry_store(&options, "writing messages", &shutdown, || {
            store.commit_chats(&sid, &commits, &committed)
        })
        .await
        .map(|per_chat| {
            per_chat
                .iter()
                .fold(WriteStats::default(), |a, s| a.plus(*s))
        })
    });
    Some(InFlight {
        task,
        chats: g.chats,
        run: snapshot,
        before_total,
    })
}

/// Waits for a group's commit, then reports its chats in order, one chat at
/// a time, as they would have been reported without grouping.
pub(super) async fn finish_flush(deps: &SyncDeps, p: InFlight) -> Result<(), Stop> {
    match p.task.await {
        Ok(Ok(stats)) => deps.sink.written(&stats),
        Ok(Err(stop)) => return Err(stop.into()),
        Err(e) => return Err(Stop::Failed(format!("writing messages: {e}"))),
    }
    let mut view = p.run;
    let mut total = p.before_total;
    for (position, chat_id, stored, chat_seq, messages_seq) in p.chats {
        view.current_chat = position;
        view.total_messages_synced = total;
        emit(
            deps,
            &view,
            chat_seq,
            SyncPhase::Chat,
            Some(chat_id.clone()),
            0,
        );
        total += stored;
        view.total_messages_synced = total;
        emit(
            deps,
            &view,
            messages_seq,
            SyncPhase::Messages,
            Some(chat_id),
            stored,
        );
    }
    Ok(())
}
