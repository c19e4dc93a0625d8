//! The body's SHA-256, computed on a blocking thread of its own beside the parser.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::BODY_CHUNKS_BUFFERED;
use crate::error::UploadError;

/// Bytes of body gathered before they are handed to the hashing thread (fewer, larger
/// handoffs: one wake-up per MiB, not per network read).
const HASH_BATCH_BYTES: usize = 1 << 20;

/// SHA-256 of a body computed on a blocking thread of its own, beside the parser: the chunks
/// are shared (`Bytes`), not copied, and at most [`BODY_CHUNKS_BUFFERED`] batches wait for it.
pub(super) struct BackgroundSha256 {
    batches: tokio::sync::mpsc::Sender<Vec<Bytes>>,
    gathered: Vec<Bytes>,
    gathered_bytes: usize,
    digest: tokio::task::JoinHandle<[u8; 32]>,
}

impl BackgroundSha256 {
    pub(super) fn start() -> BackgroundSha256 {
        let (batches, mut received) =
            tokio::sync::mpsc::channel::<Vec<Bytes>>(BODY_CHUNKS_BUFFERED);
        let digest = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            while let Some(batch) = received.blocking_recv() {
                for chunk in batch {
                    hasher.update(&chunk);
                }
            }
            hasher.finalize().into()
        });
        BackgroundSha256 {
            batches,
            gathered: Vec::new(),
            gathered_bytes: 0,
            digest,
        }
    }

    pub(super) async fn update(&mut self, chunk: Bytes) {
        self.gathered_bytes += chunk.len();
        self.gathered.push(chunk);
        if self.gathered_bytes >= HASH_BATCH_BYTES {
            self.hand_over().await;
        }
    }

    async fn hand_over(&mut self) {
        self.gathered_bytes = 0;
        let batch = std::mem::take(&mut self.gathered);
        // The thread only stops when the sender is dropped.
        let _ = self.batches.send(batch).await;
    }

    pub(super) async fn finish(mut self) -> Result<[u8; 32], UploadError> {
        self.hand_over().await;
        drop(self.batches);
        self.digest
            .await
            .map_err(|e| UploadError::BadBody(format!("hashing the body failed: {e}")))
    }
}
