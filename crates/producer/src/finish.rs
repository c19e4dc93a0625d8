//! The end of an upload whose every record Kafka acknowledged, the same for an HTTP upload and
//! a file the watcher read:
//!
//! 1. claim the content's SHA-256 ([`ReceiptStore::claim`], `SET NX`); Redis failing → abort;
//! 2. an earlier upload holds it → abort, record this one as a re-send of it
//!    ([`ReceiptStore::add_alias`]: its records were produced under its own id and may land)
//!    and answer with the earlier upload's receipt, if it has one yet;
//! 3. ours → commit; a failed commit gives the claim back ([`ReceiptStore::release`]);
//! 4. store the receipt, and the idempotency key pointing at it. The records are committed by
//!    then: a receipt that cannot be stored is logged, and the upload still succeeds.

use crate::error::UploadError;
use crate::ingest::Receipt;
use crate::kafka::UploadTransaction;
use crate::receipts::{Claim, ReceiptStore};

/// How an upload ended once its records were acknowledged.
#[derive(Debug)]
pub enum Finished {
    /// Its transaction committed, its receipt stored (or logged as not stored).
    Committed,
    /// Aborted: an earlier upload holds the same content.
    Duplicate {
        first_upload_id: String,
        /// The earlier upload's receipt; `None` while it has none (still running, or it died
        /// between its claim and its receipt).
        first_receipt: Option<Box<Receipt>>,
    },
}

/// Claims `receipt`'s content, then commits `transaction` or, for a duplicate, aborts it; stores
/// the receipt of a committed upload (with `idempotency_key`, if any). See the module's steps.
pub async fn finish_upload(
    receipts: &ReceiptStore,
    transaction: UploadTransaction,
    receipt: &Receipt,
    idempotency_key: Option<&str>,
) -> Result<Finished, UploadError> {
    let claim = match receipts
        .claim(&receipt.content_key(), &receipt.upload_id)
        .await
    {
        Ok(claim) => claim,
        Err(error) => {
            transaction.abort().await;
            return Err(error);
        }
    };
    if let Claim::Taken(first) = claim {
        transaction.abort().await;
        if let Err(error) = receipts.add_alias(&first, &receipt.upload_id).await {
            tracing::warn!(%error, first_upload_id = %first, upload_id = %receipt.upload_id, "Could not record a re-send; the first upload's reconciliation may stay short.");
        }
        let first_receipt = receipts.get(&first).await?.map(Box::new);
        return Ok(Finished::Duplicate {
            first_upload_id: first,
            first_receipt,
        });
    }
    if let Err(error) = transaction.commit().await {
        receipts
            .release(&receipt.content_key(), &receipt.upload_id)
            .await;
        return Err(error.into());
    }
    if let Err(error) = receipts.save(receipt, idempotency_key).await {
        // The records are committed: the upload succeeded even if storing its receipt failed.
        tracing::error!(%error, upload_id = %receipt.upload_id, "Could not store a receipt.");
    }
    Ok(Finished::Committed)
}
