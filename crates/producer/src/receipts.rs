//! Upload receipts in Redis: what makes re-uploads idempotent and `GET /uploads/{id}` possible.
//!
//! Keys (`P` = the configured prefix): `P upload:{id}` → the receipt as JSON;
//! `P upload:sha256:{hex}` (`P upload:sha256:{dataset}/{hex}` for a dataset other than
//! `game_rounds`) → the id of the upload that claimed that content;
//! `P upload:key:{idempotency key}` → the id of the upload made with that key;
//! `P upload:aliases:{id}` → set of the ids under which the same content was sent again (each
//! re-send's records carry its own id, and may land: see [`ReceiptStore::add_alias`]);
//! `P upload:progress:{id}` → an upload that has no receipt yet (JSON: `in_progress`, kept
//! [`PROGRESS_TTL_SECONDS`] past its last report, or `failed`, kept a day);
//! `P uploads:in_progress` → sorted set of the ids of running uploads, by start time.

use deadpool_redis::{Pool, Runtime};
use redis::AsyncCommands;
use serde::de::DeserializeOwned;

use crate::error::UploadError;
use crate::ingest::Receipt;

/// How long a running upload's last report stays; reports come every second, so an upload
/// whose producer died drops out of `GET /uploads` after this.
pub const PROGRESS_TTL_SECONDS: u64 = 30;
/// How long a failed upload's status stays readable.
pub const FAILED_TTL_SECONDS: u64 = 24 * 60 * 60;

/// Who holds a file's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This upload: it goes ahead.
    Ours,
    /// An earlier upload of the same content, by id.
    Taken(String),
}

#[derive(Clone)]
pub struct ReceiptStore {
    pool: Pool,
    prefix: String,
}

impl ReceiptStore {
    pub fn new(redis_url: &str, prefix: &str) -> anyhow::Result<ReceiptStore> {
        let pool =
            deadpool_redis::Config::from_url(redis_url).create_pool(Some(Runtime::Tokio1))?;
        Ok(ReceiptStore {
            pool,
            prefix: prefix.to_owned(),
        })
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, UploadError> {
        self.pool
            .get()
            .await
            .map_err(|e| UploadError::ReceiptsUnavailable(e.to_string()))
    }

    /// The JSON stored at `key`, if any, as a `T` (`None` when it does not read as one).
    async fn json_at<T: DeserializeOwned>(&self, key: String) -> Result<Option<T>, UploadError> {
        let mut connection = self.connection().await?;
        let text: Option<String> = connection.get(key).await.map_err(unavailable)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// The receipt of upload `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Receipt>, UploadError> {
        self.json_at(format!("{}upload:{id}", self.prefix)).await
    }

    /// Records that upload `resent` carried the same content as the committed upload `first`.
    /// A re-send is recognised only once its whole body was read and its records were produced
    /// under its own id; they stay invisible where the broker hides aborted transactions, but
    /// land in the steps a long upload committed, and on tansu. Reconciliation then counts
    /// rounds under any of these ids as the first upload's.
    pub async fn add_alias(&self, first: &str, resent: &str) -> Result<(), UploadError> {
        let mut connection = self.connection().await?;
        let _: i64 = connection
            .sadd(format!("{}upload:aliases:{first}", self.prefix), resent)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The ids the content of upload `id` was sent again under (see [`add_alias`](Self::add_alias)).
    pub async fn aliases(&self, id: &str) -> Result<Vec<String>, UploadError> {
        let mut connection = self.connection().await?;
        connection
            .smembers(format!("{}upload:aliases:{id}", self.prefix))
            .await
            .map_err(unavailable)
    }

    /// Records the state of upload `id`, started at `started_ms` (Unix ms), while it runs.
    pub async fn report_progress(
        &self,
        id: &str,
        started_ms: i64,
        state: &serde_json::Value,
    ) -> Result<(), UploadError> {
        let mut connection = self.connection().await?;
        let _: () = redis::pipe()
            .atomic()
            .set_ex(
                self.progress_key(id),
                state.to_string(),
                PROGRESS_TTL_SECONDS,
            )
            .zadd(
                format!("{}uploads:in_progress", self.prefix),
                id,
                started_ms,
            )
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Upload `id` is over: it no longer runs; `failed` is its final state if it failed (kept
    /// a day for `GET /uploads/{id}`), nothing if it has a receipt (or was a replay).
    pub async fn end_progress(
        &self,
        id: &str,
        failed: Option<&serde_json::Value>,
    ) -> Result<(), UploadError> {
        let mut connection = self.connection().await?;
        let key = self.progress_key(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zrem(format!("{}uploads:in_progress", self.prefix), id);
        match failed {
            Some(state) => pipe.set_ex(key, state.to_string(), FAILED_TTL_SECONDS),
            None => pipe.del(key),
        };
        let _: () = pipe
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The state of an upload that has no receipt: running, or failed within the last day.
    pub async fn progress(&self, id: &str) -> Result<Option<serde_json::Value>, UploadError> {
        self.json_at(self.progress_key(id)).await
    }

    fn progress_key(&self, id: &str) -> String {
        format!("{}upload:progress:{id}", self.prefix)
    }

    /// Every running upload's state, oldest first. Uploads whose producer stopped reporting
    /// (it died) are dropped from the set as they are found.
    pub async fn in_progress(&self) -> Result<Vec<serde_json::Value>, UploadError> {
        let mut connection = self.connection().await?;
        let set = format!("{}uploads:in_progress", self.prefix);
        let ids: Vec<String> = connection.zrange(&set, 0, -1).await.map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Every state in one round trip.
        let keys: Vec<String> = ids.iter().map(|id| self.progress_key(id)).collect();
        let states: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let mut running = Vec::with_capacity(ids.len());
        for (id, state) in ids.iter().zip(states) {
            match state.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
                Some(state) if state["status"] == "in_progress" => running.push(state),
                _ => {
                    let _: i64 = connection.zrem(&set, id).await.map_err(unavailable)?;
                }
            }
        }
        Ok(running)
    }

    /// The receipt of the upload made with this idempotency key, if any.
    pub async fn by_idempotency_key(&self, key: &str) -> Result<Option<Receipt>, UploadError> {
        let mut connection = self.connection().await?;
        let id: Option<String> = connection
            .get(format!("{}upload:key:{key}", self.prefix))
            .await
            .map_err(unavailable)?;
        match id {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// The id of the upload holding a file's content (its [`content_key`]), if any (without
    /// claiming it).
    ///
    /// [`content_key`]: crate::ingest::content_key
    pub async fn holder(&self, content_key: &str) -> Result<Option<String>, UploadError> {
        let mut connection = self.connection().await?;
        connection
            .get(format!("{}upload:sha256:{content_key}", self.prefix))
            .await
            .map_err(unavailable)
    }

    /// Claims a file's content (its [`content_key`](crate::ingest::content_key)) for
    /// `upload_id`, unless an earlier upload holds it.
    pub async fn claim(&self, content_key: &str, upload_id: &str) -> Result<Claim, UploadError> {
        let mut connection = self.connection().await?;
        let key = format!("{}upload:sha256:{content_key}", self.prefix);
        let claimed: bool = redis::cmd("SET")
            .arg(&key)
            .arg(upload_id)
            .arg("NX")
            .query_async::<Option<String>>(&mut connection)
            .await
            .map_err(unavailable)?
            .is_some();
        if claimed {
            return Ok(Claim::Ours);
        }
        let holder: Option<String> = connection.get(&key).await.map_err(unavailable)?;
        Ok(match holder {
            Some(holder) if holder != upload_id => Claim::Taken(holder),
            _ => Claim::Ours,
        })
    }

    /// Gives a claim back (the upload failed after claiming).
    pub async fn release(&self, content_key: &str, upload_id: &str) {
        const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
        let Ok(mut connection) = self.connection().await else {
            return;
        };
        let result = redis::Script::new(RELEASE)
            .key(format!("{}upload:sha256:{content_key}", self.prefix))
            .arg(upload_id)
            .invoke_async::<i64>(&mut connection)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, upload_id, "Could not release a content claim.");
        }
    }

    /// Stores the receipt, and the idempotency key pointing at it.
    pub async fn save(
        &self,
        receipt: &Receipt,
        idempotency_key: Option<&str>,
    ) -> Result<(), UploadError> {
        let mut connection = self.connection().await?;
        let json = serde_json::to_string(receipt).expect("receipts serialise");
        let _: () = connection
            .set(format!("{}upload:{}", self.prefix, receipt.upload_id), json)
            .await
            .map_err(unavailable)?;
        if let Some(key) = idempotency_key {
            let _: Option<String> = redis::cmd("SET")
                .arg(format!("{}upload:key:{key}", self.prefix))
                .arg(&receipt.upload_id)
                .arg("NX")
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

impl ReceiptStore {
    /// Whether Redis answers a `PING`.
    pub async fn is_ready(&self) -> bool {
        let Ok(mut connection) = self.connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut *connection)
            .await
            .is_ok()
    }
}

fn unavailable(error: redis::RedisError) -> UploadError {
    UploadError::ReceiptsUnavailable(error.to_string())
}
