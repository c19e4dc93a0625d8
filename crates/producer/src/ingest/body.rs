//! The first stage: the body as it arrives. Each chunk is counted, held to the idle timeout and
//! the size limit, hashed (unless the caller has the SHA-256) and handed to the parser over a
//! bounded channel.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};

use super::hash::BackgroundSha256;
use super::{Limits, Progress};
use crate::decode::TooMuchExpansion;
use crate::error::UploadError;

/// A body as the pipeline takes it: chunks of bytes, or the failure that ends it (an error
/// that can be shown: an actix payload's, a decoder's or a file's `io::Error`). `!Send` is
/// fine (an actix multipart field): it is drained on the caller's task.
pub trait Body: Stream<Item = Result<Bytes, Self::Failure>> + Unpin {
    type Failure: std::fmt::Display + 'static;
}

impl<S, E> Body for S
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display + 'static,
{
    type Failure = E;
}

/// What the body was, once read whole.
pub(super) struct BodySummary {
    pub(super) bytes: u64,
    /// Unless the caller hashed the body itself.
    pub(super) sha256: Option<[u8; 32]>,
}

/// Drains the request body into the channel, counting and hashing it and enforcing the size
/// limit. Stops early, without error, when the parser has stopped listening.
pub(super) async fn forward_body(
    mut body: impl Body,
    mut sender: mpsc::Sender<io::Result<Bytes>>,
    limits: Limits,
    hash: bool,
    progress: Option<Arc<Progress>>,
) -> Result<BodySummary, UploadError> {
    let mut bytes = 0_u64;
    let mut hasher = hash.then(BackgroundSha256::start);
    loop {
        let chunk = match tokio::time::timeout(limits.body_idle_timeout, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(stop(&mut sender, body_failure(error)).await),
            Err(_) => {
                let idle_ms = limits.body_idle_timeout.as_millis() as u64;
                return Err(stop(&mut sender, UploadError::ClientTooSlow { idle_ms }).await);
            }
        };
        bytes += chunk.len() as u64;
        if let Some(progress) = &progress {
            progress.set_bytes(bytes);
        }
        if bytes > limits.max_upload_bytes {
            let limit = limits.max_upload_bytes;
            return Err(stop(&mut sender, UploadError::TooLarge { limit }).await);
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(chunk.clone()).await;
        }
        if sender.send(Ok(chunk)).await.is_err() {
            break;
        }
    }
    let sha256 = match hasher {
        Some(hasher) => Some(hasher.finish().await?),
        None => None,
    };
    Ok(BodySummary { bytes, sha256 })
}

/// Stops the parser too (its error is secondary to this one); returns `failure`.
async fn stop(sender: &mut mpsc::Sender<io::Result<Bytes>>, failure: UploadError) -> UploadError {
    let _ = sender
        .send(Err(io::Error::other(failure.to_string())))
        .await;
    failure
}

/// A failure of the body stream: a compressed body that expands too far is 413, anything else
/// an unreadable body.
fn body_failure<E: std::fmt::Display + 'static>(error: E) -> UploadError {
    let expansion = (&error as &dyn std::any::Any)
        .downcast_ref::<io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<TooMuchExpansion>());
    match expansion {
        Some(expansion) => UploadError::TooMuchExpansion(*expansion),
        None => UploadError::BadBody(error.to_string()),
    }
}

/// The first `bytes` bytes of `body` (fewer when it ends or fails sooner), and the whole
/// body again, those bytes first: what a body is can be told before it is read. A failure met
/// on the way is handed on in its place.
pub async fn peek<B: Body>(
    mut body: B,
    bytes: usize,
) -> (Vec<u8>, impl Body<Failure = B::Failure>) {
    let mut head = Vec::with_capacity(bytes);
    let mut chunks = Vec::new();
    while head.len() < bytes {
        match body.next().await {
            Some(Ok(chunk)) => {
                let wanted = (bytes - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..wanted]);
                chunks.push(Ok(chunk));
            }
            Some(Err(failure)) => {
                chunks.push(Err(failure));
                break;
            }
            None => break,
        }
    }
    (head, futures::stream::iter(chunks).chain(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peek_holds_the_first_bytes_only_and_hands_on_the_whole_body() {
        let chunks = ["ab", "cdef\0", "gh"].map(|c| Ok::<_, io::Error>(Bytes::from(c)));
        let (head, body) = peek(futures::stream::iter(chunks), 4).await;
        assert_eq!(head, b"abcd", "not the NUL further on");
        let whole: Vec<Bytes> = body.map(Result::unwrap).collect().await;
        assert_eq!(whole.concat(), b"abcdef\0gh");

        let (head, body) = peek(
            futures::stream::iter([Ok::<_, io::Error>(Bytes::from("x"))]),
            4,
        )
        .await;
        assert_eq!(head, b"x");
        assert_eq!(
            body.map(Result::unwrap).collect::<Vec<_>>().await.concat(),
            b"x"
        );
    }
}
