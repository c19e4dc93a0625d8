//! Where encoded records go ([`RecordSink`]): Kafka in the service ([`DeliveryWindow`]), nowhere
//! in the benchmark's baseline ([`DiscardSink`]).

use crate::error::UploadError;
use crate::kafka::DeliveryWindow;

/// Where encoded records go: Kafka in the service, nowhere in the benchmark's baseline.
#[allow(async_fn_in_trait)]
pub trait RecordSink {
    /// Takes one record; may wait (backpressure).
    async fn send(&mut self, key: &[u8], payload: &[u8]) -> Result<(), UploadError>;
    /// Keeps one rejected row (JSON), keyed by its upload.
    async fn reject(&mut self, upload_id: &str, reject: &[u8]) -> Result<(), UploadError>;
    /// Waits until every record sent is durable.
    async fn finish(self) -> Result<(), UploadError>;
}

impl RecordSink for DeliveryWindow<'_> {
    async fn send(&mut self, key: &[u8], payload: &[u8]) -> Result<(), UploadError> {
        Ok(DeliveryWindow::send(self, key, payload).await?)
    }

    async fn reject(&mut self, upload_id: &str, reject: &[u8]) -> Result<(), UploadError> {
        Ok(DeliveryWindow::send_reject(self, upload_id, reject).await?)
    }

    async fn finish(self) -> Result<(), UploadError> {
        Ok(DeliveryWindow::finish(self).await?)
    }
}

/// Discards records: the pipeline without Kafka, for measuring parse + encode alone.
#[derive(Debug, Default)]
pub struct DiscardSink;

impl RecordSink for DiscardSink {
    async fn send(&mut self, _key: &[u8], _payload: &[u8]) -> Result<(), UploadError> {
        Ok(())
    }

    async fn reject(&mut self, _upload_id: &str, _reject: &[u8]) -> Result<(), UploadError> {
        Ok(())
    }

    async fn finish(self) -> Result<(), UploadError> {
        Ok(())
    }
}
