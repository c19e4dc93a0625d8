//! The watcher's own Redis keys, beside the producer's receipts and content claims (same
//! prefix `P`):
//!
//! - `P watcher:lock:{file name}` (`P watcher:lock:{dataset}/{file name}` for a dataset other
//!   than `game_rounds`, whose folder is another) → the instance id processing that file
//!   (`SET NX PX`, renewed while it runs): two watchers sharing a directory never read the same
//!   file at once. A restarted watcher takes back its own locks at once (its instance id is
//!   stable).
//! - `P watcher:content:{content key}` → the task reading that content (`instance|run|token`;
//!   the run is random per process), so two files with the same content (a copy under another
//!   name) are never read at once: the second waits and is then skipped as a duplicate, with no
//!   transaction to abort. A lock left by an earlier run of the same instance is taken over.
//!   The content key is the one the content is claimed under (`sluice_producer::ingest::
//!   content_key`: the SHA-256, within the dataset unless it is `game_rounds`).
//! - `P watcher:pending:{instance id}` → hash of upload id → content key, for each file between
//!   claiming its content and storing its receipt. A watcher killed in that window leaves a
//!   claim with no receipt; at start-up, after its transactions were fenced, it gives such
//!   claims back so the files are ingested again.

use std::time::Duration;

use deadpool_redis::{Pool, Runtime};

use sluice_schema::dataset::GAME_ROUNDS;

use crate::error::WatchError;
use crate::name::escaped;

const ACQUIRE: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
    return 0";
const ACQUIRE_CONTENT: &str = "local v = redis.call('GET', KEYS[1]) \
    if v == false or (string.sub(v, 1, #ARGV[2]) == ARGV[2] and string.sub(v, 1, #ARGV[3]) ~= ARGV[3]) then \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4]) return 1 end return 0";
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
    prefix: String,
    /// What file locks are scoped by: `{dataset}/` for a dataset other than `game_rounds`.
    files: String,
    instance: String,
    /// Random per process: tells this run's content locks from an earlier run's.
    run: String,
    lock_ttl: Duration,
}

impl Ledger {
    /// The ledger of the watcher `instance` of `dataset`'s files, under the key prefix `prefix`.
    pub fn new(
        redis_url: &str,
        prefix: &str,
        dataset: &str,
        instance: &str,
        lock_ttl: Duration,
    ) -> anyhow::Result<Ledger> {
        let pool =
            deadpool_redis::Config::from_url(redis_url).create_pool(Some(Runtime::Tokio1))?;
        let files = match dataset {
            GAME_ROUNDS => String::new(),
            dataset => format!("{dataset}/"),
        };
        Ok(Ledger {
            pool,
            prefix: prefix.to_owned(),
            files,
            instance: instance.to_owned(),
            run: format!("{:016x}", rand::random::<u64>()),
            lock_ttl,
        })
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}watcher:lock:{}{name}", self.prefix, self.files)
    }

    fn pending_key(&self) -> String {
        format!("{}watcher:pending:{}", self.prefix, self.instance)
    }

    async fn script(&self, body: &str, key: String, ttl: bool) -> Result<i64, WatchError> {
        let mut connection = self.pool.get().await?;
        let script = redis::Script::new(body);
        let mut invocation = script.key(key);
        invocation.arg(&self.instance);
        if ttl {
            invocation.arg(self.lock_ttl.as_millis() as u64);
        }
        Ok(invocation.invoke_async(&mut connection).await?)
    }

    /// Takes the processing lock of file `name`; false if another watcher holds it.
    pub async fn lock(&self, name: &str) -> Result<bool, WatchError> {
        Ok(self.script(ACQUIRE, self.lock_key(name), true).await? == 1)
    }

    fn content_owner(&self, token: &str) -> String {
        format!("{}|{}|{token}", self.instance, self.run)
    }

    fn content_lock_key(&self, content: &str) -> String {
        format!("{}watcher:content:{content}", self.prefix)
    }

    /// Takes the lock on a content (its content key) for one task; false if another task holds
    /// it.
    pub async fn lock_content(&self, content: &str, token: &str) -> Result<bool, WatchError> {
        let mut connection = self.pool.get().await?;
        let taken: i64 = redis::Script::new(ACQUIRE_CONTENT)
            .key(self.content_lock_key(content))
            .arg(self.content_owner(token))
            .arg(format!("{}|", self.instance))
            .arg(format!("{}|{}|", self.instance, self.run))
            .arg(self.lock_ttl.as_millis() as u64)
            .invoke_async(&mut connection)
            .await?;
        Ok(taken == 1)
    }

    pub async fn renew_content(&self, content: &str, token: &str) -> Result<bool, WatchError> {
        let mut connection = self.pool.get().await?;
        let renewed: i64 = redis::Script::new(RENEW)
            .key(self.content_lock_key(content))
            .arg(self.content_owner(token))
            .arg(self.lock_ttl.as_millis() as u64)
            .invoke_async(&mut connection)
            .await?;
        Ok(renewed == 1)
    }

    pub async fn unlock_content(&self, content: &str, token: &str) {
        let result = async {
            let mut connection = self.pool.get().await?;
            redis::Script::new(RELEASE)
                .key(self.content_lock_key(content))
                .arg(self.content_owner(token))
                .invoke_async::<i64>(&mut connection)
                .await?;
            Ok::<_, WatchError>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, content, "Could not release a content lock.");
        }
    }

    /// Extends the lock; false if it was lost.
    pub async fn renew(&self, name: &str) -> Result<bool, WatchError> {
        Ok(self.script(RENEW, self.lock_key(name), true).await? == 1)
    }

    pub async fn unlock(&self, name: &str) {
        if let Err(error) = self.script(RELEASE, self.lock_key(name), false).await {
            tracing::warn!(%error, file = %escaped(name), "Could not release a file lock.");
        }
    }

    pub fn lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    /// Notes a claim about to be made for `upload_id` under the content key `content`.
    pub async fn add_pending(&self, upload_id: &str, content: &str) -> Result<(), WatchError> {
        let mut connection = self.pool.get().await?;
        redis::cmd("HSET")
            .arg(self.pending_key())
            .arg(upload_id)
            .arg(content)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    pub async fn remove_pending(&self, upload_id: &str) -> Result<(), WatchError> {
        let mut connection = self.pool.get().await?;
        redis::cmd("HDEL")
            .arg(self.pending_key())
            .arg(upload_id)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// Every (upload id, content key) this instance noted and did not finish.
    pub async fn pending(&self) -> Result<Vec<(String, String)>, WatchError> {
        let mut connection = self.pool.get().await?;
        Ok(redis::cmd("HGETALL")
            .arg(self.pending_key())
            .query_async(&mut connection)
            .await?)
    }

    /// Whether Redis answers.
    pub async fn is_ready(&self) -> bool {
        match self.pool.get().await {
            Ok(mut connection) => redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(dataset: &str) -> Ledger {
        let ttl = Duration::from_secs(30);
        Ledger::new("redis://unused/", "sluice:", dataset, "w1", ttl).unwrap()
    }

    #[test]
    fn game_rounds_keys_are_unscoped_and_another_datasets_file_locks_are_its_own() {
        let rounds = ledger(GAME_ROUNDS);
        assert_eq!(rounds.lock_key("a.csv"), "sluice:watcher:lock:a.csv");
        assert_eq!(
            rounds.content_lock_key("ab12"),
            "sluice:watcher:content:ab12"
        );
        assert_eq!(rounds.pending_key(), "sluice:watcher:pending:w1");
        let records = ledger("records");
        assert_eq!(
            records.lock_key("a.csv"),
            "sluice:watcher:lock:records/a.csv"
        );
        assert_eq!(
            records.content_lock_key("records/ab12"),
            "sluice:watcher:content:records/ab12"
        );
        assert_eq!(records.pending_key(), "sluice:watcher:pending:w1");
    }
}
