//! Live notification streams: which patients have an open portal stream in
//! this process, and a bounded queue per stream. A slow reader loses its
//! stream (it reconnects with `Last-Event-ID` and replays from the log)
//! rather than slowing delivery to everyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Frames queued per stream before it is dropped as too slow.
const QUEUE: usize = 256;

type Streams = HashMap<String, Vec<(u64, mpsc::Sender<Arc<str>>)>>;

#[derive(Default)]
pub struct Hub {
    streams: Mutex<Streams>,
    next_id: AtomicU64,
}

/// Removes its stream from the hub when the response ends.
pub struct Subscription {
    hub: Arc<Hub>,
    pseudonym: String,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.hub.streams.lock() {
            if let Some(list) = streams.get_mut(&self.pseudonym) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    streams.remove(&self.pseudonym);
                }
            }
        }
    }
}

impl Hub {
    pub fn subscribe(
        self: &Arc<Self>,
        pseudonym: &str,
    ) -> (Subscription, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut streams) = self.streams.lock() {
            streams
                .entry(pseudonym.to_owned())
                .or_default()
                .push((id, tx));
        }
        (
            Subscription {
                hub: self.clone(),
                pseudonym: pseudonym.to_owned(),
                id,
            },
            rx,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.streams.lock().map(|s| s.is_empty()).unwrap_or(true)
    }

    pub fn wants(&self, pseudonym: &str) -> bool {
        self.streams
            .lock()
            .map(|s| s.contains_key(pseudonym))
            .unwrap_or(false)
    }

    pub fn stream_count(&self) -> usize {
        self.streams
            .lock()
            .map(|s| s.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Queues a frame on every stream of `pseudonym`; drops full or closed
    /// streams.
    pub fn publish(&self, pseudonym: &str, frame: Arc<str>) {
        let Ok(mut streams) = self.streams.lock() else {
            return;
        };
        if let Some(list) = streams.get_mut(pseudonym) {
            list.retain(|(_, tx)| tx.try_send(frame.clone()).is_ok());
            if list.is_empty() {
                streams.remove(pseudonym);
            }
        }
    }
}
