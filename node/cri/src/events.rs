//! GetContainerEvents, the kubelet's evented PLEG: every change of a
//! container's state (CREATED, STARTED, STOPPED the moment its guest ends,
//! DELETED) is broadcast to every open stream with its pod sandbox's status
//! and the statuses of the pod's containers, as containerd sends them; pod
//! sandboxes send the same four events under their own id.
//!
//! Events are built only while a stream is open, so a runtime nobody
//! watches pays nothing for them. A stream that falls more than
//! [`EVENT_BUFFER`] events behind ends with `ABORTED`
//! ([`CriError::EventsLost`]): its client has missed changes and must list
//! again. Every stream ends when the server shuts down.

use std::sync::Mutex;

use futures::stream::{self, BoxStream, StreamExt};
use k8s_cri::v1 as cri;
use tokio::sync::broadcast;

use crate::error::CriError;

/// The events a stream may fall behind by before it is ended.
pub const EVENT_BUFFER: usize = 4096;

/// A stream of events as tonic serves it.
pub(crate) type EventStream =
    BoxStream<'static, Result<cri::ContainerEventResponse, tonic::Status>>;

/// The broadcast of container events; closed at shutdown.
#[derive(Debug)]
pub(crate) struct Events {
    tx: Mutex<Option<broadcast::Sender<cri::ContainerEventResponse>>>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: Mutex::new(Some(broadcast::Sender::new(EVENT_BUFFER))),
        }
    }
}

impl Events {
    fn sender(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<cri::ContainerEventResponse>>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any stream is open (build an event only then).
    pub fn wanted(&self) -> bool {
        self.sender()
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Sends an event to every open stream.
    pub fn send(&self, event: cri::ContainerEventResponse) {
        if let Some(tx) = self.sender().as_ref() {
            // An error only means that every stream closed meanwhile.
            let _ = tx.send(event);
        }
    }

    /// A new stream of the events from now on; it ends at once if the
    /// server is shutting down.
    pub fn stream(&self) -> EventStream {
        let Some(rx) = self.sender().as_ref().map(broadcast::Sender::subscribe) else {
            return stream::empty().boxed();
        };
        stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(event) => Some((Ok(event), Some(rx))),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a container event stream fell behind: ending it");
                    Some((Err(CriError::EventsLost { missed }.into()), None))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }

    /// Ends every stream, and refuses new ones (shutdown).
    pub fn close(&self) {
        self.sender().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> cri::ContainerEventResponse {
        cri::ContainerEventResponse {
            container_id: id.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn streams_get_the_events_sent_after_they_open_and_end_on_close() {
        let events = Events::default();
        assert!(!events.wanted());
        events.send(event("before"));
        let mut a = events.stream();
        assert!(events.wanted());
        events.send(event("c1"));
        events.send(event("c2"));
        let got: Vec<String> = a
            .by_ref()
            .take(2)
            .map(|e| e.unwrap().container_id)
            .collect()
            .await;
        assert_eq!(got, ["c1", "c2"]);
        events.close();
        assert!(a.next().await.is_none());
        assert!(events.stream().next().await.is_none());
        assert!(!events.wanted());
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_ends_with_aborted() {
        let events = Events::default();
        let mut s = events.stream();
        for i in 0..=EVENT_BUFFER {
            events.send(event(&i.to_string()));
        }
        let status = s.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Aborted);
        assert!(
            status.message().contains("1 events were dropped"),
            "{status}"
        );
        assert!(s.next().await.is_none());
    }
}
