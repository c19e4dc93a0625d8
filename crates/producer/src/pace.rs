//! The pace of a request body. A client must keep sending: nothing for the idle timeout, or
//! less than the minimum rate over a period of that length spent waiting for it, ends the
//! request with 408. Without this, a `file` part sent at 10 B/s (or a silent field before it)
//! held an upload slot forever.
//!
//! Only time spent *waiting for the client* counts: while the producer does not read (Kafka's
//! backpressure), the body is not polled and no time is charged to the client, so a fast
//! client behind a slow broker is never cut.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};

use crate::error::UploadError;

/// How fast a client must send.
#[derive(Debug, Clone, Copy)]
pub struct PaceLimits {
    /// The longest wait for the next piece; also the period over which the rate is measured.
    pub idle: Duration,
    /// Bytes per second of waiting, at least (0: no minimum).
    pub min_bytes_per_s: u64,
}

/// Why a body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooSlow {
    #[error("the client sent nothing for {idle_ms} ms")]
    Idle { idle_ms: u64 },
    #[error(
        "the client sent {bytes} bytes in {waited_ms} ms, slower than the minimum of \
         {min_bytes_per_s} bytes/s (SLUICE_PRODUCER_MIN_BODY_RATE_BYTES_PER_S)"
    )]
    BelowRate {
        bytes: u64,
        waited_ms: u64,
        min_bytes_per_s: u64,
    },
}

impl From<TooSlow> for UploadError {
    fn from(slow: TooSlow) -> UploadError {
        match slow {
            TooSlow::Idle { idle_ms } => UploadError::ClientTooSlow { idle_ms },
            TooSlow::BelowRate {
                bytes,
                waited_ms,
                min_bytes_per_s,
            } => UploadError::ClientBelowMinRate {
                bytes,
                waited_ms,
                min_bytes_per_s,
            },
        }
    }
}

/// Whether (and why) a [`Paced`] body was cut; read by the handler, which sees the cut only
/// as an error of the multipart stream.
#[derive(Debug, Clone, Default)]
pub struct Verdict(Rc<Cell<Option<TooSlow>>>);

impl Verdict {
    pub fn get(&self) -> Option<TooSlow> {
        self.0.get()
    }
}

/// A body stream held to [`PaceLimits`]; once cut, it yields one error and ends.
pub struct Paced<S> {
    inner: S,
    limits: PaceLimits,
    timer: Pin<Box<Sleep>>,
    /// Since when the client is awaited, if it is.
    waiting_since: Option<Instant>,
    /// Waiting time and bytes of the current period.
    waited: Duration,
    bytes: u64,
    verdict: Verdict,
}

impl<S> Paced<S> {
    pub fn new(inner: S, limits: PaceLimits) -> (Paced<S>, Verdict) {
        let verdict = Verdict::default();
        let paced = Paced {
            inner,
            limits,
            timer: Box::pin(tokio::time::sleep(limits.idle)),
            waiting_since: None,
            waited: Duration::ZERO,
            bytes: 0,
            verdict: verdict.clone(),
        };
        (paced, verdict)
    }

    fn cut<E: From<io::Error>>(&mut self, slow: TooSlow) -> Poll<Option<Result<Bytes, E>>> {
        self.verdict.0.set(Some(slow));
        Poll::Ready(Some(Err(E::from(io::Error::new(
            io::ErrorKind::TimedOut,
            slow.to_string(),
        )))))
    }

    /// Counts a piece that arrived; at the end of a period of waiting, checks its rate.
    fn arrived(&mut self, len: usize) -> Result<(), TooSlow> {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.bytes += len as u64;
        if self.waited < self.limits.idle {
            return Ok(());
        }
        let waited_ms = self.waited.as_millis() as u64;
        let needed = self.limits.min_bytes_per_s.saturating_mul(waited_ms) / 1000;
        if self.bytes < needed {
            return Err(TooSlow::BelowRate {
                bytes: self.bytes,
                waited_ms,
                min_bytes_per_s: self.limits.min_bytes_per_s,
            });
        }
        self.waited = Duration::ZERO;
        self.bytes = 0;
        Ok(())
    }
}

impl<S, E> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: From<io::Error>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.verdict.get().is_some() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(piece))) => match this.arrived(piece.len()) {
                Ok(()) => Poll::Ready(Some(Ok(piece))),
                Err(slow) => this.cut(slow),
            },
            Poll::Ready(other) => {
                this.waiting_since = None;
                Poll::Ready(other)
            }
            Poll::Pending => {
                if this.waiting_since.is_none() {
                    let now = Instant::now();
                    this.waiting_since = Some(now);
                    this.timer.as_mut().reset(now + this.limits.idle);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => this.cut(TooSlow::Idle {
                        idle_ms: this.limits.idle.as_millis() as u64,
                    }),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    type Piece = Result<Bytes, io::Error>;

    const LIMITS: PaceLimits = PaceLimits {
        idle: Duration::from_millis(200),
        min_bytes_per_s: 1_000,
    };

    #[tokio::test]
    async fn a_client_below_the_rate_is_cut_after_one_period_of_waiting() {
        // One byte every 20 ms (50 B/s) against a minimum of 1000 B/s.
        let drip = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok::<_, io::Error>(Bytes::from_static(b"x")), ()))
        });
        let (paced, verdict) = Paced::new(Box::pin(drip), LIMITS);
        let pieces: Vec<Piece> = paced.collect().await;
        assert!(pieces.last().unwrap().is_err());
        assert!(
            pieces.len() < 50,
            "cut after about one period: {}",
            pieces.len()
        );
        assert!(
            matches!(verdict.get(), Some(TooSlow::BelowRate { .. })),
            "{:?}",
            verdict.get()
        );
    }

    #[tokio::test]
    async fn a_silent_client_is_cut_after_the_idle_timeout_and_a_steady_one_never() {
        let silent = futures::stream::pending::<Piece>();
        let (paced, verdict) = Paced::new(silent, LIMITS);
        let pieces: Vec<Piece> = paced.collect().await;
        assert_eq!(pieces.len(), 1);
        assert_eq!(verdict.get(), Some(TooSlow::Idle { idle_ms: 200 }));

        // 1 KiB every 50 ms, every other piece there at once (no waiting).
        let steady = futures::stream::iter(0..20).then(|i| async move {
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<_, io::Error>(Bytes::from(vec![b'x'; 1024]))
        });
        let (paced, verdict) = Paced::new(Box::pin(steady), LIMITS);
        let pieces: Vec<Piece> = paced.collect().await;
        assert_eq!(pieces.len(), 20);
        assert!(pieces.iter().all(|p| p.is_ok()));
        assert_eq!(verdict.get(), None);
    }
}
