//! Keyset pagination cursors for `GET /aggregated_game_rounds`.
//!
//! A cursor is opaque to clients: unpadded base64url of
//! `version (1 byte) | filters digest (16) | bucket start (u32 BE, Unix seconds) |
//! game_id (u64 BE) | player_id length (1) | player_id | HMAC-SHA256 (32)`, the MAC taken over
//! everything before it with `SLUICE_GATEWAY_CURSOR_SECRET`. The position is the last
//! returned bucket's sort key `(start, player_id, game_id)`; the filters digest is the first
//! 16 bytes of the SHA-256 of the request's canonical filters (player, game, range,
//! granularity; not the page size). A cursor that was altered or signed with another secret,
//! or that is presented with other filters, is a 400 before anything is charged.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const DIGEST_BYTES: usize = 16;
const MAC_BYTES: usize = 32;
const FIXED_BYTES: usize = 1 + DIGEST_BYTES + 4 + 8 + 1;
/// Longest cursor text accepted, far above any real one (a player id is 32 characters).
const MAX_CURSOR_CHARS: usize = 512;

/// Where the next page starts: after the bucket with this sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Bucket start, Unix seconds.
    pub start: u32,
    pub player_id: String,
    pub game_id: u64,
}

/// Why a cursor was refused (a 400, before anything is charged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Altered, truncated, signed with another secret, or not a cursor at all.
    #[error("cursor: not a cursor this API issued")]
    NotIssued,
    #[error(
        "cursor: issued for other filters; send the same player_id, game_id, from, to \
         and granularity as the request that returned it"
    )]
    OtherFilters,
}

/// Signs and checks cursors with one secret.
pub struct CursorSigner {
    secret: SecretSlice<u8>,
}

impl CursorSigner {
    pub fn new(secret: &[u8]) -> CursorSigner {
        CursorSigner {
            secret: SecretSlice::from(secret.to_vec()),
        }
    }

    /// A signer with a random secret: its cursors die with the process.
    pub fn random() -> CursorSigner {
        let mut secret = [0_u8; 32];
        rand::rng().fill_bytes(&mut secret);
        CursorSigner::new(&secret)
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.secret.expose_secret()).expect("HMAC takes any key length")
    }

    /// The cursor for the page after `position`, valid only with the same `filters`.
    pub fn encode(&self, filters: &str, position: &Position) -> String {
        let player = position.player_id.as_bytes();
        let player_len = u8::try_from(player.len()).expect("player ids are 32 characters");
        let mut payload = Vec::with_capacity(4 + 8 + 1 + player.len());
        payload.extend_from_slice(&position.start.to_be_bytes());
        payload.extend_from_slice(&position.game_id.to_be_bytes());
        payload.push(player_len);
        payload.extend_from_slice(player);
        self.seal(filters, &payload)
    }

    /// The position a cursor names, if this gateway signed it for these `filters`.
    pub fn decode(&self, filters: &str, cursor: &str) -> Result<Position, CursorError> {
        let invalid = || CursorError::NotIssued;
        let payload = self.open(filters, cursor)?;
        if payload.len() < FIXED_BYTES - 1 - DIGEST_BYTES {
            return Err(invalid());
        }
        let start = u32::from_be_bytes(payload[0..4].try_into().map_err(|_| invalid())?);
        let game_id = u64::from_be_bytes(payload[4..12].try_into().map_err(|_| invalid())?);
        let player_len = usize::from(payload[12]);
        let player = payload.get(13..13 + player_len).ok_or_else(invalid)?;
        if 13 + player_len != payload.len() {
            return Err(invalid());
        }
        let player_id = String::from_utf8(player.to_vec()).map_err(|_| invalid())?;
        Ok(Position {
            start,
            player_id,
            game_id,
        })
    }

    /// `payload` signed for `filters`: `version | filters digest | payload | HMAC`, base64url.
    pub fn seal(&self, filters: &str, payload: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(1 + DIGEST_BYTES + payload.len() + MAC_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&filters_digest(filters));
        bytes.extend_from_slice(payload);
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The payload of a cursor this gateway [sealed](Self::seal) for these `filters`.
    pub fn open(&self, filters: &str, cursor: &str) -> Result<Vec<u8>, CursorError> {
        let invalid = || CursorError::NotIssued;
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        if bytes.len() < 1 + DIGEST_BYTES + MAC_BYTES {
            return Err(invalid());
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        let mut mac = self.mac();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| invalid())?;
        if signed[0] != VERSION {
            return Err(invalid());
        }
        if signed[1..1 + DIGEST_BYTES] != filters_digest(filters) {
            return Err(CursorError::OtherFilters);
        }
        Ok(signed[1 + DIGEST_BYTES..].to_vec())
    }
}

fn filters_digest(filters: &str) -> [u8; DIGEST_BYTES] {
    let digest = Sha256::digest(filters.as_bytes());
    let mut out = [0_u8; DIGEST_BYTES];
    out.copy_from_slice(&digest[..DIGEST_BYTES]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position() -> Position {
        Position {
            start: 1_571_731_200,
            player_id: "9ece8c4020f8aed10676cd1c56a41889".into(),
            game_id: 24_002,
        }
    }

    #[test]
    fn a_cursor_round_trips_with_its_filters() {
        let signer = CursorSigner::new(b"a-secret-of-at-least-thirty-two-bytes");
        let cursor = signer.encode("p=x|g=-", &position());
        assert!(cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(signer.decode("p=x|g=-", &cursor).unwrap(), position());
    }

    #[test]
    fn altered_foreign_or_misapplied_cursors_are_bad_requests() {
        let signer = CursorSigner::new(b"a-secret-of-at-least-thirty-two-bytes");
        let cursor = signer.encode("p=x", &position());
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        for index in 0..bytes.len() {
            bytes[index] ^= 1;
            let altered = URL_SAFE_NO_PAD.encode(&bytes);
            assert!(signer.decode("p=x", &altered).is_err(), "byte {index}");
            bytes[index] ^= 1;
        }
        let other = CursorSigner::new(b"another-secret-of-thirty-two-bytes!!");
        assert!(other.decode("p=x", &cursor).is_err());
        let message = match signer.decode("p=y", &cursor) {
            Err(error @ CursorError::OtherFilters) => error.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(message.contains("other filters"), "{message}");
        for junk in ["", "!!!", "AAAA", &"A".repeat(600)] {
            assert!(signer.decode("p=x", junk).is_err(), "{junk}");
        }
    }
}
