//! The port's side of a session: [`WebDriverClient`], a cheap handle that
//! sends [`Command`]s to the session's task and waits for its answer.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::browser::{ClientError, HistoryRequest, WhatsAppClient};
use crate::domain::{AddressBook, Chat, Message, MessageMark};

/// What the port asks of a session's task.
pub(super) enum Command {
    Chats(oneshot::Sender<Result<Vec<Chat>, ClientError>>),
    Contacts(oneshot::Sender<Result<AddressBook, ClientError>>),
    Messages {
        chat_id: String,
        limit: u32,
        /// Only messages newer than this (an incremental sync).
        after: Option<MessageMark>,
        reply: oneshot::Sender<Result<Vec<Message>, ClientError>>,
    },
    /// Earlier messages (a deepen).
    Earlier {
        chat_id: String,
        req: HistoryRequest,
        reply: oneshot::Sender<Result<Vec<Message>, ClientError>>,
    },
    Stop {
        logout: bool,
        /// Save the login for other hosts (not when the lease moved on).
        save: bool,
        reply: oneshot::Sender<()>,
    },
}

/// The port's view of a session's browser: a handle on its task.
pub(super) struct WebDriverClient {
    commands: mpsc::Sender<Command>,
    call_timeout: Duration,
}

impl WebDriverClient {
    pub(super) fn new(commands: mpsc::Sender<Command>, call_timeout: Duration) -> Self {
        Self {
            commands,
            call_timeout,
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Command,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        let gone = || ClientError::Disconnected("browser session ended".into());
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        // The task may be finishing a poll first; a call gets its own timeout
        // inside, so this outer bound is only a safety net.
        match tokio::time::timeout(self.call_timeout * 2 + Duration::from_secs(5), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(ClientError::Transient(
                "browser did not answer in time".into(),
            )),
        }
    }
}

impl WebDriverClient {
    async fn stop_with(&self, logout: bool, save: bool) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Stop {
                logout,
                save,
                reply,
            })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
        }
    }
}

#[async_trait]
impl WhatsAppClient for WebDriverClient {
    async fn list_chats(&self) -> Result<Vec<Chat>, ClientError> {
        self.ask(Command::Chats).await
    }

    async fn fetch_messages(&self, chat: &Chat, limit: u32) -> Result<Vec<Message>, ClientError> {
        let chat_id = chat.id.clone();
        self.ask(|reply| Command::Messages {
            chat_id,
            limit,
            after: None,
            reply,
        })
        .await
    }

    async fn fetch_messages_after(
        &self,
        chat: &Chat,
        limit: u32,
        mark: &MessageMark,
    ) -> Result<Vec<Message>, ClientError> {
        let chat_id = chat.id.clone();
        let after = Some(mark.clone());
        let messages: Vec<Message> = self
            .ask(|reply| Command::Messages {
                chat_id,
                limit,
                after,
                reply,
            })
            .await?;
        // The page filtered already; this keeps the port's promise even
        // against a bridge of an older host version.
        Ok(messages.into_iter().filter(|m| mark.is_new(m)).collect())
    }

    async fn fetch_messages_before(
        &self,
        chat: &Chat,
        req: &HistoryRequest,
    ) -> Result<Vec<Message>, ClientError> {
        let chat_id = chat.id.clone();
        let sent = req.clone();
        let messages: Vec<Message> = self
            .ask(|reply| Command::Earlier {
                chat_id,
                req: sent,
                reply,
            })
            .await?;
        // The page filtered already; this keeps the port's promise whatever
        // the page answered.
        Ok(messages
            .into_iter()
            .filter(|m| req.before.is_older(m) && req.not_before.is_none_or(|t| m.timestamp >= t))
            .collect())
    }

    async fn list_contacts(&self) -> Result<AddressBook, ClientError> {
        self.ask(Command::Contacts).await
    }

    async fn stop(&self, logout: bool) {
        self.stop_with(logout, true).await;
    }

    async fn abandon(&self) {
        self.stop_with(false, false).await;
    }
}
