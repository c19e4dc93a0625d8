//! The Lua scripts of `src/lua/` and their replies. A script answers with a status code whose
//! meaning is its own (`-2` is "not enough credits" from `admit.lua`, "revoked" from
//! `rotate.lua`, "the balance would overflow" from `top_up.lua`); each reply is decoded here,
//! in one place, into a type that names its cases, and nothing else reads a script's numbers.
//! A reply outside what its script returns is a decoding error (the Redis call failed).

use redis::{FromRedisValue, ParsingError, Script, Value};

/// Every script, loaded once.
pub struct Scripts {
    pub admit: Script,
    pub create: Script,
    pub settle: Script,
    pub sweep: Script,
    pub top_up: Script,
    pub rotate: Script,
    pub revoke: Script,
    pub set_rate_limit: Script,
    pub set_credits: Script,
}

impl Scripts {
    pub fn load() -> Scripts {
        Scripts {
            admit: Script::new(include_str!("lua/admit.lua")),
            create: with_outbox(include_str!("lua/create.lua")),
            settle: with_outbox(include_str!("lua/settle.lua")),
            sweep: with_outbox(include_str!("lua/sweep.lua")),
            top_up: with_outbox(include_str!("lua/top_up.lua")),
            rotate: Script::new(include_str!("lua/rotate.lua")),
            revoke: Script::new(include_str!("lua/revoke.lua")),
            set_rate_limit: Script::new(include_str!("lua/set_rate_limit.lua")),
            set_credits: Script::new(include_str!("lua/set_credits.lua")),
        }
    }
}

/// A script that moves credits, with the outbox functions it calls (`lua/outbox.lua`).
fn with_outbox(script: &str) -> Script {
    Script::new(&format!("{}{script}", include_str!("lua/outbox.lua")))
}

/// `lua/admit.lua`'s reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Charged: the key's credits after the charge and its rate limit's state.
    Admitted {
        key_id: String,
        credits_left: u64,
        limit: u32,
        remaining: u64,
        reset_secs: u64,
    },
    /// No key has the secret.
    UnknownKey,
    Revoked {
        key_id: String,
    },
    Expired {
        key_id: String,
    },
    /// Fewer credits than the cost; nothing charged, no rate budget spent.
    OutOfCredits {
        key_id: String,
    },
    /// Over the rate limit; nothing charged.
    RateLimited {
        key_id: String,
        limit: u32,
        reset_secs: u64,
        retry_after_secs: u64,
    },
}

impl FromRedisValue for Admit {
    fn from_redis_value(value: Value) -> Result<Admit, ParsingError> {
        let (status, credits, limit, remaining, reset_secs, retry_after_secs, key_id): (
            i64,
            i64,
            u32,
            u64,
            u64,
            u64,
            String,
        ) = FromRedisValue::from_redis_value(value)?;
        Ok(match status {
            0 => Admit::Admitted {
                key_id,
                credits_left: credits.max(0).unsigned_abs(),
                limit,
                remaining,
                reset_secs,
            },
            -1 => Admit::UnknownKey,
            -2 => Admit::OutOfCredits { key_id },
            -3 => Admit::Revoked { key_id },
            -4 => Admit::Expired { key_id },
            -5 => Admit::RateLimited {
                key_id,
                limit,
                reset_secs,
                retry_after_secs,
            },
            other => return Err(unknown_status("admit", other)),
        })
    }
}

/// What closing a lease found (`lua/settle.lua`'s reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Closed now; the key's balance after it (`None`: the key record is gone).
    Closed { balance: Option<u64> },
    /// Closed before: settled, refunded, or swept after its deadline.
    ClosedBefore,
}

impl FromRedisValue for Settlement {
    fn from_redis_value(value: Value) -> Result<Settlement, ParsingError> {
        let (status, balance): (i64, i64) = FromRedisValue::from_redis_value(value)?;
        match status {
            0 => Ok(Settlement::Closed {
                balance: u64::try_from(balance).ok(),
            }),
            -1 => Ok(Settlement::ClosedBefore),
            other => Err(unknown_status("settle", other)),
        }
    }
}

/// The reply of a script that changes one key's record and only needs it to exist
/// (`lua/revoke.lua`, `lua/set_rate_limit.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    Done,
    UnknownKey,
}

impl FromRedisValue for KeyChange {
    fn from_redis_value(value: Value) -> Result<KeyChange, ParsingError> {
        match i64::from_redis_value(value)? {
            0 => Ok(KeyChange::Done),
            -1 => Ok(KeyChange::UnknownKey),
            other => Err(unknown_status("revoke or set_rate_limit", other)),
        }
    }
}

/// `lua/rotate.lua`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    Rotated,
    UnknownKey,
    /// A revoked key is never given a new secret.
    Revoked,
}

impl FromRedisValue for Rotation {
    fn from_redis_value(value: Value) -> Result<Rotation, ParsingError> {
        match i64::from_redis_value(value)? {
            0 => Ok(Rotation::Rotated),
            -1 => Ok(Rotation::UnknownKey),
            -2 => Ok(Rotation::Revoked),
            other => Err(unknown_status("rotate", other)),
        }
    }
}

/// `lua/top_up.lua`'s reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopUp {
    /// Added; the balance now.
    Added {
        balance: u64,
    },
    UnknownKey,
    /// The balance would pass 2^53 - 1; nothing added.
    Overflow,
}

impl FromRedisValue for TopUp {
    fn from_redis_value(value: Value) -> Result<TopUp, ParsingError> {
        let (status, balance): (i64, i64) = FromRedisValue::from_redis_value(value)?;
        match status {
            0 => Ok(TopUp::Added {
                balance: balance.max(0).unsigned_abs(),
            }),
            -1 => Ok(TopUp::UnknownKey),
            -2 => Ok(TopUp::Overflow),
            other => Err(unknown_status("top_up", other)),
        }
    }
}

/// `lua/set_credits.lua`'s reply (a rebuild).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCredits {
    /// The balance before and after.
    Set {
        previous: u64,
        balance: u64,
    },
    UnknownKey,
    /// The key's open leases hold more than its ledger balance; nothing set.
    LeasesExceedLedger {
        leased: i64,
    },
}

impl FromRedisValue for SetCredits {
    fn from_redis_value(value: Value) -> Result<SetCredits, ParsingError> {
        let (status, previous, balance): (i64, i64, i64) = FromRedisValue::from_redis_value(value)?;
        match status {
            0 => Ok(SetCredits::Set {
                previous: previous.max(0).unsigned_abs(),
                balance: balance.max(0).unsigned_abs(),
            }),
            -1 => Ok(SetCredits::UnknownKey),
            -2 => Ok(SetCredits::LeasesExceedLedger { leased: balance }),
            other => Err(unknown_status("set_credits", other)),
        }
    }
}

fn unknown_status(script: &str, status: i64) -> ParsingError {
    ParsingError::from(format!("{script}.lua never answers status {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(items: &[Value]) -> Value {
        Value::Array(items.to_vec())
    }

    fn int(n: i64) -> Value {
        Value::Int(n)
    }

    fn text(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn each_status_of_admit_is_its_own_case() {
        let admit = |status: i64, credits: i64, retry: i64| {
            Admit::from_redis_value(reply(&[
                int(status),
                int(credits),
                int(10),
                int(4),
                int(2),
                int(retry),
                text("3f2a9c0d1e8b7a65"),
            ]))
        };
        let key_id = "3f2a9c0d1e8b7a65".to_owned();
        assert_eq!(
            admit(0, 7, 0).unwrap(),
            Admit::Admitted {
                key_id: key_id.clone(),
                credits_left: 7,
                limit: 10,
                remaining: 4,
                reset_secs: 2,
            }
        );
        assert_eq!(
            admit(-2, 1, 0).unwrap(),
            Admit::OutOfCredits {
                key_id: key_id.clone()
            }
        );
        assert_eq!(
            admit(-3, 0, 0).unwrap(),
            Admit::Revoked {
                key_id: key_id.clone()
            }
        );
        assert_eq!(
            admit(-4, 0, 0).unwrap(),
            Admit::Expired {
                key_id: key_id.clone()
            }
        );
        assert_eq!(
            admit(-5, 7, 1).unwrap(),
            Admit::RateLimited {
                key_id,
                limit: 10,
                reset_secs: 2,
                retry_after_secs: 1,
            }
        );
        let unknown = reply(&[int(-1), int(0), int(0), int(0), int(0), int(0), text("")]);
        assert_eq!(Admit::from_redis_value(unknown).unwrap(), Admit::UnknownKey);
        assert!(admit(-9, 0, 0).is_err());
        assert!(Admit::from_redis_value(int(0)).is_err());
    }

    #[test]
    fn the_same_number_means_what_its_script_says() {
        let pair = |a, b| reply(&[int(a), int(b)]);
        assert_eq!(
            TopUp::from_redis_value(pair(-2, 5)).unwrap(),
            TopUp::Overflow
        );
        assert_eq!(
            Rotation::from_redis_value(int(-2)).unwrap(),
            Rotation::Revoked
        );
        assert_eq!(
            TopUp::from_redis_value(pair(0, 12)).unwrap(),
            TopUp::Added { balance: 12 }
        );
        assert_eq!(
            TopUp::from_redis_value(pair(-1, 0)).unwrap(),
            TopUp::UnknownKey
        );
        assert_eq!(
            Settlement::from_redis_value(pair(0, 3)).unwrap(),
            Settlement::Closed { balance: Some(3) }
        );
        assert_eq!(
            Settlement::from_redis_value(pair(0, -1)).unwrap(),
            Settlement::Closed { balance: None }
        );
        assert_eq!(
            Settlement::from_redis_value(pair(-1, 0)).unwrap(),
            Settlement::ClosedBefore
        );
        assert_eq!(
            SetCredits::from_redis_value(reply(&[int(-2), int(9), int(4)])).unwrap(),
            SetCredits::LeasesExceedLedger { leased: 4 }
        );
        assert_eq!(
            SetCredits::from_redis_value(reply(&[int(0), int(9), int(4)])).unwrap(),
            SetCredits::Set {
                previous: 9,
                balance: 4
            }
        );
        assert_eq!(
            KeyChange::from_redis_value(int(-1)).unwrap(),
            KeyChange::UnknownKey
        );
        assert_eq!(
            KeyChange::from_redis_value(int(0)).unwrap(),
            KeyChange::Done
        );
        assert!(KeyChange::from_redis_value(int(-2)).is_err());
        assert!(Rotation::from_redis_value(int(1)).is_err());
    }
}
