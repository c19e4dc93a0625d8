//! Refunds of charges for answers the client did not get (ClickHouse failed or timed out).
//! A refund is tried at once; if Redis does not take it, it is retried in the background with
//! backoff. Every refund carries an id that Redis remembers (`lua/refund.lua`), so a retry
//! after an unclear failure (the reply lost, not the command) never pays twice.

use std::time::{Duration, Instant};

use crate::credits::{CreditStore, KeyId};
use crate::ledger::{Ledger, LedgerEvent, Movement};

/// Wait before the first retry; it doubles after each failed attempt, up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(30);
/// How long a refund is retried before it is given up (logged and counted).
const RETRY_FOR: Duration = Duration::from_secs(15 * 60);

/// A charge to give back.
#[derive(Debug, Clone)]
pub struct Refund {
    pub key_id: KeyId,
    pub cost: u64,
    /// The endpoint and HTTP status of the failed answer, for the ledger.
    pub endpoint: &'static str,
    pub status: u16,
    pub started: Instant,
}

/// Refunds now, or keeps retrying in the background until Redis takes it. Returns once the
/// first attempt is over (the request does not wait for retries).
pub async fn refund(credits: &CreditStore, ledger: &Ledger, refund: Refund) {
    let refund_id = uuid::Uuid::new_v4().to_string();
    match credits
        .refund(&refund.key_id, refund.cost, &refund_id)
        .await
    {
        Ok(()) => refunded(ledger, refund),
        Err(error) => {
            tracing::warn!(%error, key_id = %refund.key_id, %refund_id, "Refund failed; retrying in the background.");
            tokio::spawn(retry(credits.clone(), ledger.clone(), refund, refund_id));
        }
    }
}

async fn retry(credits: CreditStore, ledger: Ledger, refund: Refund, refund_id: String) {
    let given_up_at = Instant::now() + RETRY_FOR;
    let mut wait = FIRST_WAIT;
    loop {
        tokio::time::sleep(wait).await;
        match credits
            .refund(&refund.key_id, refund.cost, &refund_id)
            .await
        {
            Ok(()) => {
                tracing::info!(key_id = %refund.key_id, %refund_id, "Refund made on retry.");
                return refunded(&ledger, refund);
            }
            Err(error) if Instant::now() >= given_up_at => {
                tracing::error!(%error, key_id = %refund.key_id, %refund_id, cost = refund.cost, "Refund given up.");
                metrics::counter!("sluice_gateway_refunds_abandoned_total").increment(1);
                return;
            }
            Err(_) => wait = (wait * 2).min(LONGEST_WAIT),
        }
    }
}

fn refunded(ledger: &Ledger, refund: Refund) {
    metrics::counter!("sluice_gateway_credits_refunded_total").increment(refund.cost);
    ledger.record(LedgerEvent::new(
        refund.key_id,
        Movement::Refunded,
        refund.cost,
        refund.endpoint,
        refund.status,
        refund.started,
    ));
}
