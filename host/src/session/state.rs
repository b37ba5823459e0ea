//! The session lifecycle as a pure state machine.
//!
//! `transition` maps (state, input) to the next state and the effects the
//! actor must carry out, with no I/O, so every edge is unit-tested below.
//! Inputs that make no sense in a state (a QR code after `ready`, anything
//! after `stopped`) are ignored rather than trusted: providers are external
//! programs and may misbehave.
//!
//! A login waits for the phone in one of two ways: a QR code to scan
//! (`WaitingForScan`) or a pairing code to type (`WaitingForCode`, a
//! session created with `login.phoneNumber`). Both are status `qr` ("the
//! phone has to link this device"), so clients and metrics that know the
//! lifecycle see the same one; the snapshot says which prompt is pending.
//! The latest prompt wins: a provider that falls back from a pairing code
//! to a QR code (or the other way) moves between the two.

use crate::domain::{Me, PairingCode, QrCode, SessionStatus};

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Starting,
    WaitingForScan { qr: QrCode },
    WaitingForCode { code: PairingCode },
    Authenticated,
    Ready { me: Option<Me> },
    AuthFailed { reason: String },
    Disconnected { reason: String },
    Stopped,
}

/// What can happen to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Qr { qr: QrCode },
    PairingCode { code: PairingCode },
    Authenticated,
    AuthFailure { reason: String },
    Ready { me: Option<Me> },
    Disconnected { reason: String },
    Stop,
}

/// What the actor must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Forward the matching event to the session's room.
    Emit,
    /// Write the new status to the store.
    Persist,
    /// Start (or resume) the automatic sync.
    AutoSync,
    /// Cancel a running sync, reporting `reason`.
    CancelSync { reason: String },
    /// Stop the provider client.
    StopClient,
}

impl State {
    pub fn status(&self) -> SessionStatus {
        match self {
            State::Starting => SessionStatus::Starting,
            State::WaitingForScan { .. } | State::WaitingForCode { .. } => SessionStatus::Qr,
            State::Authenticated => SessionStatus::Authenticated,
            State::Ready { .. } => SessionStatus::Ready,
            State::AuthFailed { .. } => SessionStatus::AuthFailure,
            State::Disconnected { .. } => SessionStatus::Disconnected,
            State::Stopped => SessionStatus::Stopped,
        }
    }

    pub fn qr(&self) -> Option<&QrCode> {
        match self {
            State::WaitingForScan { qr } => Some(qr),
            _ => None,
        }
    }

    pub fn pairing_code(&self) -> Option<&PairingCode> {
        match self {
            State::WaitingForCode { code } => Some(code),
            _ => None,
        }
    }

    /// Before the phone linked the device (nothing to log in with yet).
    fn is_linking(&self) -> bool {
        matches!(
            self,
            State::Starting | State::WaitingForScan { .. } | State::WaitingForCode { .. }
        )
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, State::Ready { .. })
    }

    fn is_final(&self) -> bool {
        matches!(
            self,
            State::Stopped | State::AuthFailed { .. } | State::Disconnected { .. }
        )
    }
}

/// The next state and its effects; `None` when the input is ignored.
pub fn transition(state: &State, input: Input) -> Option<(State, Vec<Effect>)> {
    use Effect::*;
    if matches!(state, State::Stopped) {
        return None;
    }
    let next = match (state, input) {
        (_, Input::Stop) => {
            return Some((
                State::Stopped,
                vec![
                    CancelSync {
                        reason: "cancelled".into(),
                    },
                    StopClient,
                    Persist,
                ],
            ));
        }
        (s, Input::Disconnected { reason }) if !s.is_final() => {
            return Some((
                State::Disconnected {
                    reason: reason.clone(),
                },
                vec![
                    Emit,
                    CancelSync {
                        reason: format!("disconnected: {reason}"),
                    },
                    StopClient,
                    Persist,
                ],
            ));
        }
        (s, Input::Qr { qr }) if s.is_linking() => (State::WaitingForScan { qr }, vec![Emit]),
        (s, Input::PairingCode { code }) if s.is_linking() => {
            (State::WaitingForCode { code }, vec![Emit])
        }
        (s, Input::Authenticated) if s.is_linking() => (State::Authenticated, vec![Emit, Persist]),
        (s, Input::AuthFailure { reason }) if s.is_linking() || *s == State::Authenticated => (
            State::AuthFailed { reason },
            vec![Emit, StopClient, Persist],
        ),
        // A stored login may go straight to ready.
        (s, Input::Ready { me }) if s.is_linking() || *s == State::Authenticated => {
            (State::Ready { me }, vec![Emit, Persist, AutoSync])
        }
        _ => return None,
    };
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qr(n: u32) -> QrCode {
        QrCode {
            qr: format!("q{n}"),
            attempt: n,
            expires_at: 0,
        }
    }

    fn code(n: u32) -> PairingCode {
        PairingCode {
            code: format!("ABCD-EFG{n}"),
            attempt: n,
            expires_at: 0,
        }
    }

    fn states() -> Vec<State> {
        vec![
            State::Starting,
            State::WaitingForScan { qr: qr(1) },
            State::WaitingForCode { code: code(1) },
            State::Authenticated,
            State::Ready { me: None },
            State::AuthFailed { reason: "r".into() },
            State::Disconnected { reason: "r".into() },
            State::Stopped,
        ]
    }

    fn inputs() -> Vec<Input> {
        vec![
            Input::Qr { qr: qr(2) },
            Input::PairingCode { code: code(2) },
            Input::Authenticated,
            Input::AuthFailure { reason: "r".into() },
            Input::Ready { me: None },
            Input::Disconnected { reason: "x".into() },
            Input::Stop,
        ]
    }

    #[test]
    fn the_happy_path() {
        let s = State::Starting;
        let (s, e) = transition(&s, Input::Qr { qr: qr(1) }).unwrap();
        assert_eq!(e, [Effect::Emit]);
        let (s, _) = transition(&s, Input::Qr { qr: qr(2) }).unwrap();
        assert_eq!(s.qr().unwrap().attempt, 2);
        let (s, e) = transition(&s, Input::Authenticated).unwrap();
        assert_eq!(e, [Effect::Emit, Effect::Persist]);
        let (s, e) = transition(&s, Input::Ready { me: None }).unwrap();
        assert!(e.contains(&Effect::AutoSync));
        assert!(s.is_ready());
    }

    #[test]
    fn every_state_input_pair_is_decided() {
        // The whole table, so a new state or input cannot slip through.
        for s in states() {
            for i in inputs() {
                let got = transition(&s, i.clone());
                let expect_some = match (&s, &i) {
                    (State::Stopped, _) => false,
                    (_, Input::Stop) => true,
                    (State::AuthFailed { .. } | State::Disconnected { .. }, _) => false,
                    (_, Input::Disconnected { .. }) => true,
                    (
                        State::Starting
                        | State::WaitingForScan { .. }
                        | State::WaitingForCode { .. },
                        Input::Qr { .. } | Input::PairingCode { .. } | Input::Authenticated,
                    ) => true,
                    (_, Input::Qr { .. } | Input::PairingCode { .. } | Input::Authenticated) => {
                        false
                    }
                    (State::Ready { .. }, _) => false,
                    (_, Input::AuthFailure { .. }) => true,
                    (_, Input::Ready { .. }) => true,
                };
                assert_eq!(got.is_some(), expect_some, "{s:?} + {i:?} -> {got:?}");
            }
        }
    }

    #[test]
    fn stop_cancels_the_sync_and_is_final() {
        for s in states().into_iter().filter(|s| *s != State::Stopped) {
            let (next, effects) = transition(&s, Input::Stop).unwrap();
            assert_eq!(next, State::Stopped);
            assert!(effects.contains(&Effect::CancelSync {
                reason: "cancelled".into()
            }));
            assert!(effects.contains(&Effect::StopClient));
        }
        for i in inputs() {
            assert!(transition(&State::Stopped, i).is_none());
        }
    }

    #[test]
    fn a_disconnect_while_syncing_cancels_with_its_reason() {
        let (s, e) = transition(
            &State::Ready { me: None },
            Input::Disconnected {
                reason: "browser closed".into(),
            },
        )
        .unwrap();
        assert_eq!(s.status(), SessionStatus::Disconnected);
        assert!(e.contains(&Effect::CancelSync {
            reason: "disconnected: browser closed".into()
        }));
    }

    #[test]
    fn late_qr_after_ready_is_ignored() {
        assert!(transition(&State::Ready { me: None }, Input::Qr { qr: qr(9) }).is_none());
        assert!(transition(&State::Authenticated, Input::Qr { qr: qr(9) }).is_none());
        for s in [State::Authenticated, State::Ready { me: None }] {
            assert!(transition(&s, Input::PairingCode { code: code(9) }).is_none());
        }
    }

    #[test]
    fn the_pairing_code_path_is_the_qr_path_with_another_prompt() {
        let (s, e) = transition(&State::Starting, Input::PairingCode { code: code(1) }).unwrap();
        assert_eq!(e, [Effect::Emit]);
        assert_eq!(s.status(), SessionStatus::Qr);
        assert_eq!(s.qr(), None);
        let (s, e) = transition(&s, Input::PairingCode { code: code(2) }).unwrap();
        assert_eq!(e, [Effect::Emit], "a refreshed code is emitted");
        assert_eq!(s.pairing_code().unwrap().attempt, 2);
        // The latest prompt wins, both ways.
        let (q, _) = transition(&s, Input::Qr { qr: qr(1) }).unwrap();
        assert_eq!((q.qr().is_some(), q.pairing_code()), (true, None));
        let (back, _) = transition(&q, Input::PairingCode { code: code(3) }).unwrap();
        assert_eq!(back.pairing_code().unwrap().attempt, 3);
        let (s, e) = transition(&back, Input::Authenticated).unwrap();
        assert_eq!(e, [Effect::Emit, Effect::Persist]);
        assert_eq!(s.pairing_code(), None);
        let (s, e) = transition(&s, Input::Ready { me: None }).unwrap();
        assert!(e.contains(&Effect::AutoSync) && s.is_ready());
    }
}
