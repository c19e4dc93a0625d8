//! API keys and credits in Redis. A key is stored only as the SHA-256 of its secret; charging
//! is one Lua script, so a balance can never go below zero however many requests race.

use std::fmt;

use deadpool_redis::{Pool, Runtime};
use rand::RngCore;
use redis::Script;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

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
    pub fn parse(text: &str) -> Result<ApiKey, ApiError> {
        let secret = text
            .trim()
            .strip_prefix(KEY_PREFIX)
            .ok_or(ApiError::UnknownApiKey)?;
        if secret.len() == SECRET_BYTES * 2 && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(ApiKey(text.trim().to_owned()))
        } else {
            Err(ApiError::UnknownApiKey)
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

/// Checks the key and takes `cost` credits, atomically. Returns `{status, credits}`:
/// status 0 charged (credits = what is left), -1 unknown key, -2 not enough credits.
const CHARGE: &str = r"
local credits = redis.call('HGET', KEYS[1], 'credits')
if not credits then return {-1, 0} end
credits = tonumber(credits)
local cost = tonumber(ARGV[1])
if credits < cost then return {-2, credits} end
return {0, redis.call('HINCRBY', KEYS[1], 'credits', -cost)}
";

/// Gives `amount` credits back, unless the key was deleted meanwhile.
const REFUND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'credits', ARGV[1])
";

/// A key's public description (never the secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub credits: u64,
}

/// Keys and credits in Redis.
#[derive(Clone)]
pub struct CreditStore {
    pool: Pool,
    prefix: String,
    charge: std::sync::Arc<Script>,
    refund: std::sync::Arc<Script>,
}

impl CreditStore {
    pub fn new(redis_url: &str, prefix: &str) -> anyhow::Result<CreditStore> {
        let pool =
            deadpool_redis::Config::from_url(redis_url).create_pool(Some(Runtime::Tokio1))?;
        Ok(CreditStore {
            pool,
            prefix: prefix.to_owned(),
            charge: std::sync::Arc::new(Script::new(CHARGE)),
            refund: std::sync::Arc::new(Script::new(REFUND)),
        })
    }

    fn redis_key(&self, key: &ApiKey) -> String {
        format!("{}key:{}", self.prefix, key.hash())
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, ApiError> {
        self.pool
            .get()
            .await
            .map_err(|e| ApiError::RedisUnavailable(Box::new(e)))
    }

    /// Creates a key holding `credits`; the returned secret is never stored.
    pub async fn create_key(
        &self,
        name: &str,
        credits: u64,
    ) -> Result<(ApiKey, KeyInfo), ApiError> {
        let key = ApiKey::generate();
        let id = key.hash()[..16].to_owned();
        let created_at = chrono::Utc::now().to_rfc3339();
        let mut connection = self.connection().await?;
        redis::cmd("HSET")
            .arg(self.redis_key(&key))
            .arg("id")
            .arg(&id)
            .arg("name")
            .arg(name)
            .arg("credits")
            .arg(credits)
            .arg("created_at")
            .arg(created_at)
            .query_async::<()>(&mut connection)
            .await
            .map_err(redis_down)?;
        let info = KeyInfo {
            id,
            name: name.to_owned(),
            credits,
        };
        Ok((key, info))
    }

    /// Takes `cost` credits from the key; returns the credits left.
    pub async fn charge(&self, key: &ApiKey, cost: u64) -> Result<u64, ApiError> {
        let mut connection = self.connection().await?;
        let (status, credits): (i64, i64) = self
            .charge
            .key(self.redis_key(key))
            .arg(cost)
            .invoke_async(&mut connection)
            .await
            .map_err(redis_down)?;
        match status {
            0 => Ok(credits.max(0).unsigned_abs()),
            -2 => Err(ApiError::OutOfCredits),
            _ => Err(ApiError::UnknownApiKey),
        }
    }

    /// Gives back a charge for an answer the client did not get.
    pub async fn refund(&self, key: &ApiKey, cost: u64) -> Result<(), ApiError> {
        let mut connection = self.connection().await?;
        self.refund
            .key(self.redis_key(key))
            .arg(cost)
            .invoke_async::<i64>(&mut connection)
            .await
            .map_err(redis_down)?;
        Ok(())
    }

    /// Credits left on a key, or `None` if it does not exist.
    pub async fn credits(&self, key: &ApiKey) -> Result<Option<u64>, ApiError> {
        let mut connection = self.connection().await?;
        let credits: Option<u64> = redis::cmd("HGET")
            .arg(self.redis_key(key))
            .arg("credits")
            .query_async(&mut connection)
            .await
            .map_err(redis_down)?;
        Ok(credits)
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

fn redis_down(error: redis::RedisError) -> ApiError {
    ApiError::RedisUnavailable(Box::new(error))
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
            assert!(matches!(ApiKey::parse(text), Err(ApiError::UnknownApiKey)));
        }
        assert_eq!(format!("{:?}", ApiKey::generate()), "ApiKey(…)");
    }
}
