//! Charges held by leases, so that every credit charged is for an answer given.
//!
//! A request is charged when it is admitted (`lua/admit.lua`), and the charge is held by a
//! lease until the gateway settles it (`lua/settle.lua`): the answer was given (the charge
//! stands) or failed (it is refunded). Either way the ledger's events are written by the same
//! script. A gateway killed, or cut off from Redis, before it settled leaves the lease open;
//! once its deadline (`SLUICE_GATEWAY_CHARGE_LEASE_MS` after admission) has passed, the
//! [`sweeper`] of any live gateway refunds it (`lua/sweep.lua`). A lease closes exactly once,
//! so a refund is never paid twice, whoever makes it. After a crash and one lease time, a
//! key's balance is what it was granted minus the answers it got.
//!
//! The lease must outlast the longest answer (the query timeout plus the time to write it):
//! an answer settled after its lease was swept is given free (counted in
//! `sluice_gateway_leases_settled_late_total`), never charged twice.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::credits::{CreditError, CreditStore, Lease, Settlement};

/// Leases refunded per sweep call (the sweep repeats while it finds this many).
const SWEEP_BATCH: u32 = 500;

/// The answer was given: the charge stands. If Redis cannot be told, the lease is swept after
/// its deadline and the answer is free (logged), never a charge without an answer.
pub async fn answered(credits: &CreditStore, lease: &Lease, http_status: u16) {
    match credits.settle(lease, http_status, false).await {
        Ok(Settlement::Closed { .. }) => {}
        Ok(Settlement::ClosedBefore) => {
            metrics::counter!(crate::metric::LEASES_SETTLED_LATE_TOTAL).increment(1);
            tracing::warn!(key_id = %lease.key_id, lease_id = %lease.id, "Answer settled after its lease was swept: given free.");
        }
        Err(error) => {
            tracing::warn!(%error, key_id = %lease.key_id, lease_id = %lease.id, "Charge not settled; the lease sweep will refund it.");
        }
    }
}

/// The answer failed: the charge goes back. If Redis cannot be told now, the lease sweep
/// refunds it once its deadline has passed.
pub async fn refund(credits: &CreditStore, lease: &Lease, http_status: u16) {
    match credits.settle(lease, http_status, true).await {
        Ok(Settlement::Closed { .. }) => {
            metrics::counter!(crate::metric::CREDITS_REFUNDED_TOTAL).increment(lease.cost);
        }
        Ok(Settlement::ClosedBefore) => {}
        Err(error) => {
            tracing::warn!(%error, key_id = %lease.key_id, lease_id = %lease.id, "Refund not made; the lease sweep will make it.");
        }
    }
}

/// Refunds every expired lease now; returns how many.
pub async fn sweep_once(credits: &CreditStore) -> Result<u64, CreditError> {
    let mut total = 0;
    loop {
        let swept = credits.sweep_expired_leases(SWEEP_BATCH).await?;
        total += swept;
        if swept < u64::from(SWEEP_BATCH) {
            break;
        }
    }
    if total > 0 {
        metrics::counter!(crate::metric::LEASES_EXPIRED_TOTAL).increment(total);
        tracing::warn!(leases = total, "Expired charges refunded.");
    }
    Ok(total)
}

/// Sweeps expired leases at start and every `interval` until `shutdown`.
pub fn sweeper(
    credits: CreditStore,
    interval: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = sweep_once(&credits).await {
                tracing::warn!(%error, "Lease sweep failed; trying again.");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    })
}
