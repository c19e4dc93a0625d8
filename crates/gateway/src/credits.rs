//! API keys, credits and rate limits in Redis. A secret is stored only as its SHA-256; each
//! request is admitted by one Lua script (key, credits, rate limit, charge), so a balance can
//! never go below zero and a rate limit never be exceeded however many requests race.
//!
//! # Redis layout (`P` is `SLUICE_GATEWAY_REDIS_KEY_PREFIX`)
//! - `P keyid:{id}`: hash, the key's one record: `id`, `name`, `credits`, `created_at`,
//!   `secret` (SHA-256 of the current secret), and when set `expires_at` / `expires_at_ms`,
//!   `revoked_at`, `rotated_at`, `rate_requests` / `rate_per_seconds` (absent: the configured
//!   default), `rl_tat_ms` (the rate limiter's state).
//! - `P secret:{sha256}`: string, secret hash → id. The current secret's has no TTL; after a
//!   rotation the old one's expires with the grace period. Every secret of a key resolves to
//!   the same record, so all of them draw from one balance.
//! - `P keys`: set of every id, for listing.
//! - `P key:{sha256}`: a key created before key management (a hash with `id`, `name`,
//!   `credits`, `created_at`); moved to the layout above by its first request.
//! - `P lease:{lease id}`: hash, an admitted request's charge until it is settled (`key_id`,
//!   `cost`, `endpoint`, `admitted_ms`); `P leases`: sorted set, lease id → deadline (ms,
//!   Redis time). The key record's `leased` is the sum of its open leases. See `charge.rs`.
//! - `P ledger:outbox`: stream, the usage-ledger events of every movement, written by the
//!   same script as the movement (`lua/outbox.lua`) and drained by `ledger.rs`.
//!
//! The scripts in `src/lua/` name the record they derive from a lookup, so the layout needs a
//! single Redis (or one hash slot), not a cluster.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use deadpool_redis::{Pool, Runtime};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::scripts::{Admit, KeyChange, Rotation, Scripts, SetCredits, TopUp};

pub use crate::scripts::Settlement;

/// Why a key could not be used or changed. Mapped to HTTP once, in `error.rs`.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    /// Malformed, unknown, revoked, expired or past its rotation grace period: the client is
    /// not told which.
    #[error("the API key is not valid")]
    UnknownKey,
    #[error("the API key has no credits left")]
    OutOfCredits,
    #[error("too many requests for this API key; retry after {} s", .0.retry_after_secs)]
    RateLimited(RetryLater),
    /// No key has this id (or the id is malformed).
    #[error("no API key has this id")]
    KeyNotFound,
    #[error("the API key is revoked")]
    KeyRevoked,
    /// A value outside what the API accepts; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// The change cannot be made in the key's current state; the message says why.
    #[error("{0}")]
    Conflict(String),
    #[error("the credit store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A request over its key's rate limit: when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLater {
    /// Requests allowed per window.
    pub limit: u32,
    /// Seconds until the window is fully replenished.
    pub reset_secs: u64,
    /// Seconds until the next request is allowed, at least 1.
    pub retry_after_secs: u64,
}

const KEY_PREFIX: &str = "sk_sluice_";
const SECRET_BYTES: usize = 32;

/// A presented API key whose shape is right. Holding one says nothing about whether it exists.
pub struct ApiKey(String);

impl ApiKey {
    /// A fresh random key: a recognisable prefix and 32 random bytes in hex.
    pub fn generate() -> ApiKey {
        let mut secret = [0_u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        ApiKey(format!("{KEY_PREFIX}{}", hex::encode(secret)))
    }

    /// Accepts only the shape [`generate`](Self::generate) produces.
    pub fn parse(text: &str) -> Result<ApiKey, CreditError> {
        let secret = text
            .trim()
            .strip_prefix(KEY_PREFIX)
            .ok_or(CreditError::UnknownKey)?;
        if secret.len() == SECRET_BYTES * 2 && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(ApiKey(text.trim().to_owned()))
        } else {
            Err(CreditError::UnknownKey)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up: the hex SHA-256 of the secret.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// Largest balance a key may hold: 2^53 - 1, exact in Lua and in JSON.
pub const MAX_CREDITS: u64 = (1 << 53) - 1;
/// Longest grace period of an old secret after a rotation: 30 days.
pub const MAX_GRACE_SECONDS: u32 = 30 * 24 * 3600;
const ID_BYTES: usize = 8;

/// A key's public id: 16 lowercase hex characters. Not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn generate() -> KeyId {
        let mut id = [0_u8; ID_BYTES];
        rand::rng().fill_bytes(&mut id);
        KeyId(hex::encode(id))
    }

    /// Accepts only the shape ids have; anything else cannot name a key.
    pub fn parse(text: &str) -> Result<KeyId, CreditError> {
        if text.len() == ID_BYTES * 2
            && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            Ok(KeyId(text.to_owned()))
        } else {
            Err(CreditError::KeyNotFound)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request budget: at most `requests` per `per_seconds`, bursts of up to `requests` included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct RateLimit {
    /// Requests allowed per window (1 to 1000000).
    #[schema(example = 10)]
    requests: u32,
    /// Length of the window in seconds (1 to 86400).
    #[schema(example = 1)]
    per_seconds: u32,
}

impl RateLimit {
    pub fn new(requests: u32, per_seconds: u32) -> Result<RateLimit, CreditError> {
        if !(1..=1_000_000).contains(&requests) {
            return Err(CreditError::Invalid(
                "rate_limit.requests: must be between 1 and 1000000".into(),
            ));
        }
        if !(1..=86_400).contains(&per_seconds) {
            return Err(CreditError::Invalid(
                "rate_limit.per_seconds: must be between 1 and 86400".into(),
            ));
        }
        Ok(RateLimit {
            requests,
            per_seconds,
        })
    }

    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn per_seconds(&self) -> u32 {
        self.per_seconds
    }
}

/// What a new key starts with.
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    pub name: &'a str,
    pub credits: u64,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<RateLimit>,
}

/// A key's public description: never the secret, nor its hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyInfo {
    /// Public id, used in the admin API.
    #[schema(example = "3f2a9c0d1e8b7a65")]
    pub id: String,
    pub name: String,
    /// Credits left.
    pub credits: u64,
    pub created_at: Option<DateTime<Utc>>,
    /// Whether the key was revoked; revoked keys are refused with 401.
    pub revoked: bool,
    pub revoked_at: Option<DateTime<Utc>>,
    /// After this instant the key is refused with 401; `null`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the secret was last rotated.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The rate limit in force for this key.
    pub rate_limit: RateLimit,
    /// Whether `rate_limit` is the gateway's default (the key has none of its own).
    pub rate_limit_is_default: bool,
    /// Credits charged to requests not yet settled (being answered, or awaiting the lease
    /// sweep); not yet in the ledger. Internal: the audit counts them.
    #[serde(skip)]
    pub leased: u64,
}

impl KeyInfo {
    fn from_record(record: &HashMap<String, String>, default: RateLimit) -> Option<KeyInfo> {
        let instant = |field: &str| {
            record
                .get(field)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let number = |field: &str| record.get(field).and_then(|n| n.parse::<u32>().ok());
        let own = match (number("rate_requests"), number("rate_per_seconds")) {
            (Some(requests), Some(per_seconds)) => RateLimit::new(requests, per_seconds).ok(),
            _ => None,
        };
        Some(KeyInfo {
            id: record.get("id")?.clone(),
            name: record.get("name").cloned().unwrap_or_default(),
            credits: record
                .get("credits")?
                .parse::<i64>()
                .ok()?
                .max(0)
                .unsigned_abs(),
            created_at: instant("created_at"),
            revoked: record.contains_key("revoked_at"),
            revoked_at: instant("revoked_at"),
            expires_at: instant("expires_at"),
            rotated_at: instant("rotated_at"),
            rate_limit: own.unwrap_or(default),
            rate_limit_is_default: own.is_none(),
            leased: match record.get("leased") {
                Some(leased) => leased.parse::<u64>().ok()?,
                None => 0,
            },
        })
    }
}

/// The state of a key's rate limit after a request (the `X-RateLimit-*` headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    pub limit: u32,
    pub remaining: u64,
    /// Seconds until the budget is full again.
    pub reset_secs: u64,
}

/// A lease's id: 32 lowercase hex characters, random.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseId(String);

impl LeaseId {
    fn generate() -> LeaseId {
        LeaseId(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An admitted request's open charge (see `charge.rs`).
#[derive(Debug, Clone)]
pub struct Lease {
    pub id: LeaseId,
    pub key_id: KeyId,
    pub cost: u64,
    pub endpoint: &'static str,
    /// When it was admitted (this gateway's clock), for the ledger's latency.
    pub admitted: Instant,
}

/// An admitted, charged request; its charge is held by `lease` until settled.
#[derive(Debug, Clone)]
pub struct Admission {
    pub key_id: KeyId,
    pub credits_remaining: u64,
    pub rate: RateState,
    pub lease: Lease,
}

/// Keys, credits and rate limits in Redis.
#[derive(Clone)]
pub struct CreditStore {
    pool: Pool,
    prefix: String,
    default_rate_limit: RateLimit,
    scripts: Arc<Scripts>,
}

impl CreditStore {
    pub fn new(
        redis_url: &str,
        prefix: &str,
        default_rate_limit: RateLimit,
    ) -> anyhow::Result<CreditStore> {
        let pool =
            deadpool_redis::Config::from_url(redis_url).create_pool(Some(Runtime::Tokio1))?;
        Ok(CreditStore {
            pool,
            prefix: prefix.to_owned(),
            default_rate_limit,
            scripts: Arc::new(Scripts::load()),
        })
    }

    fn record_key(&self, id: &KeyId) -> String {
        format!("{}keyid:{}", self.prefix, id)
    }

    fn secret_key(&self, hash: &str) -> String {
        format!("{}secret:{}", self.prefix, hash)
    }

    fn legacy_key(&self, hash: &str) -> String {
        format!("{}key:{}", self.prefix, hash)
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, CreditError> {
        self.pool
            .get()
            .await
            .map_err(|e| CreditError::Unavailable(Box::new(e)))
    }

    /// Creates a key and records its starting credits (even 0) as granted by `endpoint`;
    /// the returned secret is never stored.
    pub async fn create_key(
        &self,
        new: NewKey<'_>,
        endpoint: &'static str,
    ) -> Result<(ApiKey, KeyInfo), CreditError> {
        if new.credits > MAX_CREDITS {
            return Err(CreditError::Invalid(format!(
                "credits: must be at most {MAX_CREDITS}"
            )));
        }
        let key = ApiKey::generate();
        let hash = key.hash();
        let id = KeyId::generate();
        let created_at = Utc::now();
        let mut fields: Vec<(&str, String)> = vec![
            ("id", id.to_string()),
            ("name", new.name.to_owned()),
            ("credits", new.credits.to_string()),
            ("created_at", created_at.to_rfc3339()),
            ("secret", hash.clone()),
        ];
        if let Some(expires_at) = new.expires_at {
            fields.push(("expires_at", expires_at.to_rfc3339()));
            fields.push(("expires_at_ms", expires_at.timestamp_millis().to_string()));
        }
        if let Some(limit) = new.rate_limit {
            fields.push(("rate_requests", limit.requests.to_string()));
            fields.push(("rate_per_seconds", limit.per_seconds.to_string()));
        }
        let mut connection = self.connection().await?;
        let mut invocation = self.scripts.create.prepare_invoke();
        invocation
            .key(self.record_key(&id))
            .key(self.secret_key(&hash))
            .arg(&self.prefix)
            .arg(id.as_str())
            .arg(new.credits)
            .arg(endpoint);
        for (field, value) in &fields {
            invocation.arg(*field).arg(value);
        }
        invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(redis_down)?;
        let record: HashMap<String, String> = fields
            .into_iter()
            .map(|(field, value)| (field.to_owned(), value))
            .collect();
        let info = KeyInfo::from_record(&record, self.default_rate_limit)
            .expect("a fresh record is complete");
        Ok((key, info))
    }

    /// Resolves the key, checks its credits and rate limit and takes `cost` under a lease
    /// that must be settled within `lease` (see `charge.rs`), in one script.
    pub async fn admit(
        &self,
        key: &ApiKey,
        cost: u64,
        endpoint: &'static str,
        lease: std::time::Duration,
    ) -> Result<Admission, CreditError> {
        let hash = key.hash();
        let lease_id = LeaseId::generate();
        let mut connection = self.connection().await?;
        let admitted: Admit = self
            .scripts
            .admit
            .key(self.secret_key(&hash))
            .key(self.legacy_key(&hash))
            .arg(&self.prefix)
            .arg(cost)
            .arg(self.default_rate_limit.requests)
            .arg(self.default_rate_limit.per_seconds)
            .arg(&hash)
            .arg(lease_id.as_str())
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(endpoint)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)?;
        let lease = |key_id: &KeyId| Lease {
            id: lease_id,
            key_id: key_id.clone(),
            cost,
            endpoint,
            admitted: Instant::now(),
        };
        admission(admitted, lease)
    }

    /// Closes an admitted request's lease (`lua/settle.lua`): its charge stands (`refund`
    /// false: the answer was given) or goes back to the key; either way the ledger's outbox
    /// gets the events in the same script. A lease closes once: settling again, or after the
    /// sweep refunded it, changes nothing and says so.
    pub async fn settle(
        &self,
        lease: &Lease,
        http_status: u16,
        refund: bool,
    ) -> Result<Settlement, CreditError> {
        let latency_ms = u64::try_from(lease.admitted.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut connection = self.connection().await?;
        self.scripts
            .settle
            .arg(&self.prefix)
            .arg(lease.id.as_str())
            .arg(http_status)
            .arg(latency_ms)
            .arg(if refund { "1" } else { "0" })
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)
    }

    /// Refunds up to `limit` charges whose lease deadline passed unsettled (`lua/sweep.lua`);
    /// returns how many.
    pub async fn sweep_expired_leases(&self, limit: u32) -> Result<u64, CreditError> {
        let mut connection = self.connection().await?;
        self.scripts
            .sweep
            .arg(&self.prefix)
            .arg(limit)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)
    }

    /// The Redis pool and key prefix, for the ledger's outbox reader.
    pub(crate) fn pool(&self) -> (&Pool, &str) {
        (&self.pool, &self.prefix)
    }

    /// Credits left on the key a secret names, or `None` if no key has it.
    pub async fn credits(&self, key: &ApiKey) -> Result<Option<u64>, CreditError> {
        let hash = key.hash();
        let mut connection = self.connection().await?;
        let id: Option<String> = redis::cmd("GET")
            .arg(self.secret_key(&hash))
            .query_async(&mut connection)
            .await
            .map_err(redis_down)?;
        let record = match id {
            Some(id) => self.record_key(&KeyId(id)),
            None => self.legacy_key(&hash),
        };
        redis::cmd("HGET")
            .arg(record)
            .arg("credits")
            .query_async(&mut connection)
            .await
            .map_err(redis_down)
    }

    /// The key a secret names, if that secret is in force (the key neither revoked nor
    /// expired): what its holder may read about it without spending anything. Any other
    /// secret is `UnknownApiKey`, as at admission. (Expiry is judged by this gateway's clock
    /// here, not Redis `TIME`: nothing is admitted or charged on it.) A key from before key
    /// management (`P key:{sha256}`) is found once a metered request moved it.
    pub async fn key_by_secret(&self, key: &ApiKey) -> Result<KeyInfo, CreditError> {
        let id: Option<String> = {
            let mut connection = self.connection().await?;
            redis::cmd("GET")
                .arg(self.secret_key(&key.hash()))
                .query_async(&mut connection)
                .await
                .map_err(redis_down)?
        };
        let info = match self.key(&KeyId(id.ok_or(CreditError::UnknownKey)?)).await {
            Err(CreditError::KeyNotFound) => return Err(CreditError::UnknownKey),
            other => other?,
        };
        let expired = info.expires_at.is_some_and(|at| at <= Utc::now());
        if info.revoked || expired {
            return Err(CreditError::UnknownKey);
        }
        Ok(info)
    }

    /// One key's description.
    pub async fn key(&self, id: &KeyId) -> Result<KeyInfo, CreditError> {
        let mut connection = self.connection().await?;
        let record: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.record_key(id))
            .query_async(&mut connection)
            .await
            .map_err(redis_down)?;
        KeyInfo::from_record(&record, self.default_rate_limit).ok_or(CreditError::KeyNotFound)
    }

    /// Every key, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, CreditError> {
        let mut connection = self.connection().await?;
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{}keys", self.prefix))
            .query_async(&mut connection)
            .await
            .map_err(redis_down)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.record_key(&KeyId(id.clone())));
        }
        let records: Vec<HashMap<String, String>> = pipe
            .query_async(&mut connection)
            .await
            .map_err(redis_down)?;
        let mut keys: Vec<KeyInfo> = records
            .iter()
            .filter_map(|record| KeyInfo::from_record(record, self.default_rate_limit))
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    /// Refuses every secret of the key from now on. Revoking twice is harmless.
    pub async fn revoke(&self, id: &KeyId) -> Result<KeyInfo, CreditError> {
        let mut connection = self.connection().await?;
        let revoked: KeyChange = self
            .scripts
            .revoke
            .key(self.record_key(id))
            .arg(Utc::now().to_rfc3339())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)?;
        drop(connection);
        self.changed(id, revoked).await
    }

    /// A new secret for the key; the old one keeps working for `grace_seconds`, on the same
    /// balance. Returns the new secret and when the old one stops working.
    pub async fn rotate(
        &self,
        id: &KeyId,
        grace_seconds: u32,
    ) -> Result<(ApiKey, DateTime<Utc>), CreditError> {
        let key = ApiKey::generate();
        let hash = key.hash();
        let now = Utc::now();
        let mut connection = self.connection().await?;
        let rotation: Rotation = self
            .scripts
            .rotate
            .key(self.record_key(id))
            .key(self.secret_key(&hash))
            .arg(&self.prefix)
            .arg(&hash)
            .arg(grace_seconds)
            .arg(id.as_str())
            .arg(now.to_rfc3339())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)?;
        match rotation {
            Rotation::Rotated => Ok((
                key,
                now + chrono::Duration::seconds(i64::from(grace_seconds)),
            )),
            Rotation::Revoked => Err(CreditError::KeyRevoked),
            Rotation::UnknownKey => Err(CreditError::KeyNotFound),
        }
    }

    /// Adds credits, recorded as granted by `endpoint`; returns the new balance.
    pub async fn top_up(
        &self,
        id: &KeyId,
        add: u64,
        endpoint: &'static str,
    ) -> Result<u64, CreditError> {
        if add == 0 || add > MAX_CREDITS {
            return Err(CreditError::Invalid(format!(
                "add: must be between 1 and {MAX_CREDITS}"
            )));
        }
        let mut connection = self.connection().await?;
        let topped: TopUp = self
            .scripts
            .top_up
            .key(self.record_key(id))
            .arg(add)
            .arg(&self.prefix)
            .arg(id.as_str())
            .arg(endpoint)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)?;
        match topped {
            TopUp::Added { balance } => Ok(balance),
            // The amount is fine; the balance it would be added to is not: 409.
            TopUp::Overflow => Err(CreditError::Conflict(format!(
                "add: the balance would pass {MAX_CREDITS}"
            ))),
            TopUp::UnknownKey => Err(CreditError::KeyNotFound),
        }
    }

    /// Sets the key's balance from its ledger balance less its open leases (a rebuild);
    /// returns the previous balance and the new one.
    pub async fn set_credits(
        &self,
        id: &KeyId,
        ledger_balance: u64,
    ) -> Result<(u64, u64), CreditError> {
        if ledger_balance > MAX_CREDITS {
            return Err(CreditError::Conflict(format!(
                "the balance would pass {MAX_CREDITS}"
            )));
        }
        let mut connection = self.connection().await?;
        let set: SetCredits = self
            .scripts
            .set_credits
            .key(self.record_key(id))
            .arg(ledger_balance)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)?;
        match set {
            SetCredits::Set { previous, balance } => Ok((previous, balance)),
            SetCredits::LeasesExceedLedger { leased } => Err(CreditError::Conflict(format!(
                "the key's open charges ({leased}) exceed its ledger balance; try again when it is idle"
            ))),
            SetCredits::UnknownKey => Err(CreditError::KeyNotFound),
        }
    }

    /// Sets the key's own rate limit and starts its budget afresh.
    pub async fn set_rate_limit(
        &self,
        id: &KeyId,
        limit: RateLimit,
    ) -> Result<KeyInfo, CreditError> {
        let mut connection = self.connection().await?;
        let set: KeyChange = self
            .scripts
            .set_rate_limit
            .key(self.record_key(id))
            .arg(limit.requests)
            .arg(limit.per_seconds)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)?;
        drop(connection);
        self.changed(id, set).await
    }

    /// The key's description after a change to it, if it exists.
    async fn changed(&self, id: &KeyId, change: KeyChange) -> Result<KeyInfo, CreditError> {
        match change {
            KeyChange::Done => self.key(id).await,
            KeyChange::UnknownKey => Err(CreditError::KeyNotFound),
        }
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> bool {
        match self.connection().await {
            Ok(mut connection) => redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// What `lua/admit.lua` found: the request admitted, its charge held by `lease`, or why it was
/// refused (a key refused for any reason is unknown to the client; the log says why).
fn admission(
    admitted: Admit,
    lease: impl FnOnce(&KeyId) -> Lease,
) -> Result<Admission, CreditError> {
    let refused = |reason: &str, key_id: &str| {
        tracing::info!(reason, key_id = %key_id, "API key refused.");
        Err(CreditError::UnknownKey)
    };
    match admitted {
        Admit::Admitted {
            key_id,
            credits_left,
            limit,
            remaining,
            reset_secs,
        } => {
            let key_id = KeyId(key_id);
            Ok(Admission {
                lease: lease(&key_id),
                key_id,
                credits_remaining: credits_left,
                rate: RateState {
                    limit,
                    remaining,
                    reset_secs,
                },
            })
        }
        Admit::OutOfCredits { .. } => Err(CreditError::OutOfCredits),
        Admit::RateLimited {
            limit,
            reset_secs,
            retry_after_secs,
            ..
        } => Err(CreditError::RateLimited(RetryLater {
            limit,
            reset_secs,
            retry_after_secs: retry_after_secs.max(1),
        })),
        Admit::Revoked { key_id } => refused("revoked", &key_id),
        Admit::Expired { key_id } => refused("expired", &key_id),
        Admit::UnknownKey => refused("unknown", ""),
    }
}

fn redis_down(error: redis::RedisError) -> CreditError {
    CreditError::Unavailable(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash_stably() {
        let key = ApiKey::generate();
        assert!(key.expose().starts_with("sk_sluice_"));
        assert_eq!(key.expose().len(), KEY_PREFIX.len() + 64);
        let again = ApiKey::parse(key.expose()).unwrap();
        assert_eq!(again.hash(), key.hash());
        assert_ne!(ApiKey::generate().hash(), key.hash());
    }

    #[test]
    fn malformed_keys_are_unknown() {
        for text in [
            "",
            "sk_sluice_",
            "sk_sluice_xyz",
            "' OR 1=1 --",
            "sk_other_00",
        ] {
            assert!(matches!(ApiKey::parse(text), Err(CreditError::UnknownKey)));
        }
        assert_eq!(format!("{:?}", ApiKey::generate()), "ApiKey(…)");
    }

    #[test]
    fn key_ids_and_rate_limits_parse_only_their_shapes() {
        let id = KeyId::generate();
        assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
        for text in [
            "",
            "3F2A9C0D1E8B7A65",
            "3f2a9c0d1e8b7a6",
            "3f2a9c0d1e8b7a65:x",
            "../keys",
        ] {
            assert!(
                matches!(KeyId::parse(text), Err(CreditError::KeyNotFound)),
                "{text}"
            );
        }
        assert!(RateLimit::new(1, 1).is_ok());
        assert!(RateLimit::new(0, 1).is_err());
        assert!(RateLimit::new(1, 0).is_err());
        assert!(RateLimit::new(1_000_001, 1).is_err());
        assert!(RateLimit::new(1, 86_401).is_err());
    }
}
