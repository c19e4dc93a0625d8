//! The Avro encoding of a [`GameRound`] on the wire: Avro single-object encoding
//! (`C3 01`, the schema's 8-byte CRC-64-AVRO fingerprint, then the binary datum).
//!
//! Both directions use `serde_avro_fast`, which (de)serialises straight between Rust structs and
//! bytes, with no `apache_avro::types::Value`s and no field lookups by name; apache-avro only
//! parses the schema to compute the fingerprint. Every record carries the id of the upload it
//! arrived in, beside the round itself.
//!
//! Messages written with an earlier schema (see `schemas/history/`) are still read: the
//! fingerprint in their header picks the reader schema, and fields they lack take their default.

use std::sync::OnceLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use serde::{Deserialize, Serialize};

use crate::domain::{Money, PlayerId};
use crate::round::GameRound;

/// The schema text, from `schemas/game_round.avsc`.
pub const SCHEMA_JSON: &str = include_str!("../../../schemas/game_round.avsc");

/// Earlier versions of the schema, oldest first, still accepted when reading.
const HISTORY: &[&str] = &[include_str!("../../../schemas/history/game_round.v1.avsc")];

/// Why bytes could not be turned into a [`GameRound`] (or back).
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("the message does not start with the single-object header of a known schema")]
    UnknownHeader,
    #[error("the record does not encode: {0}")]
    Encode(#[from] serde_avro_fast::ser::SerError),
    #[error("the record does not decode: {0}")]
    Decode(#[from] serde_avro_fast::de::DeError),
}

/// A decoded record: the round and the upload it arrived in (empty for records written before
/// records carried it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub round: GameRound,
    pub upload_id: String,
}

/// The record as written: the round's fields, borrowed, then the upload id. Field order and
/// names follow `schemas/game_round.avsc`.
#[derive(Serialize)]
struct WireRef<'a> {
    created_timestamp: i64,
    game_instance_id: i64,
    user_id: &'a PlayerId,
    game_id: i64,
    real_amount_bet: Option<Money>,
    bonus_amount_bet: Option<Money>,
    real_amount_win: Option<Money>,
    bonus_amount_win: Option<Money>,
    game_name: &'a str,
    provider: &'a str,
    upload_id: &'a str,
}

/// The record as read, under any known schema version.
#[derive(Deserialize)]
struct Wire {
    created_timestamp: i64,
    game_instance_id: i64,
    user_id: PlayerId,
    game_id: i64,
    real_amount_bet: Option<Money>,
    bonus_amount_bet: Option<Money>,
    real_amount_win: Option<Money>,
    bonus_amount_win: Option<Money>,
    game_name: String,
    provider: String,
    #[serde(default)]
    upload_id: String,
}

/// One schema version: its single-object header and its parsed form.
struct Version {
    header: Vec<u8>,
    schema: serde_avro_fast::Schema,
}

impl Version {
    fn parse(json: &str) -> Version {
        let parsed = apache_avro::Schema::parse_str(json).expect("the schema files are valid");
        Version {
            header: RabinFingerprintHeader::from_schema(&parsed).build_header(),
            schema: json.parse().expect("the schema files are valid"),
        }
    }
}

/// Encodes and decodes game rounds. Build once ([`get`](Self::get)).
pub struct GameRoundCodec {
    current: Version,
    history: Vec<Version>,
}

impl GameRoundCodec {
    /// The process-wide codec.
    pub fn get() -> &'static GameRoundCodec {
        static CODEC: OnceLock<GameRoundCodec> = OnceLock::new();
        CODEC.get_or_init(|| GameRoundCodec {
            current: Version::parse(SCHEMA_JSON),
            history: HISTORY.iter().map(|json| Version::parse(json)).collect(),
        })
    }

    /// The 10-byte single-object header every message written now starts with.
    pub fn header(&self) -> &[u8] {
        &self.current.header
    }

    /// Appends the single-object encoding of `round`, arrived in upload `upload_id`, to `out`.
    pub fn encode(
        &self,
        round: &GameRound,
        upload_id: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), AvroError> {
        out.extend_from_slice(&self.current.header);
        let wire = WireRef {
            created_timestamp: round.created_timestamp,
            game_instance_id: round.game_instance_id,
            user_id: &round.user_id,
            game_id: round.game_id,
            real_amount_bet: round.real_amount_bet,
            bonus_amount_bet: round.bonus_amount_bet,
            real_amount_win: round.real_amount_win,
            bonus_amount_win: round.bonus_amount_win,
            game_name: &round.game_name,
            provider: &round.provider,
            upload_id,
        };
        let mut config = serde_avro_fast::ser::SerializerConfig::new(&self.current.schema);
        serde_avro_fast::to_datum(&wire, out, &mut config)?;
        Ok(())
    }

    /// Decodes one message written by [`encode`](Self::encode), now or with an earlier schema.
    pub fn decode(&self, message: &[u8]) -> Result<Envelope, AvroError> {
        let (version, datum) = std::iter::once(&self.current)
            .chain(&self.history)
            .find_map(|v| Some((v, message.strip_prefix(v.header.as_slice())?)))
            .ok_or(AvroError::UnknownHeader)?;
        let wire: Wire = serde_avro_fast::from_datum_slice(datum, &version.schema)?;
        Ok(Envelope {
            round: GameRound {
                created_timestamp: wire.created_timestamp,
                game_instance_id: wire.game_instance_id,
                user_id: wire.user_id,
                game_id: wire.game_id,
                real_amount_bet: wire.real_amount_bet,
                bonus_amount_bet: wire.bonus_amount_bet,
                real_amount_win: wire.real_amount_win,
                bonus_amount_win: wire.bonus_amount_win,
                game_name: wire.game_name,
                provider: wire.provider,
            },
            upload_id: wire.upload_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round() -> GameRound {
        GameRound {
            created_timestamp: 1_571_732_442_000,
            game_instance_id: 20_000,
            user_id: PlayerId::parse("9ece8c4020f8aed10676cd1c56a41889").unwrap(),
            game_id: 24_002,
            real_amount_bet: Some(Money::from_scaled(20_000)),
            bonus_amount_bet: None,
            real_amount_win: Some(Money::from_scaled(-5)),
            bonus_amount_win: Some(Money::ZERO),
            game_name: "Rich Wilde and the \"Tome\" of Madness, Play'n".into(),
            provider: "Play'n GO".into(),
        }
    }

    const UPLOAD: &str = "0b8e6c1e-4c1f-4bb4-9d0c-3c1f3a1b2c3d";

    #[test]
    fn rounds_survive_an_encode_decode_round_trip_with_their_upload() {
        let codec = GameRoundCodec::get();
        let mut bytes = Vec::new();
        codec.encode(&round(), UPLOAD, &mut bytes).unwrap();
        assert_eq!(&bytes[..2], [0xC3, 0x01]);
        let decoded = codec.decode(&bytes).unwrap();
        assert_eq!(decoded.round, round());
        assert_eq!(decoded.upload_id, UPLOAD);
    }

    #[test]
    fn the_encoding_is_the_one_apache_avro_writes_for_the_schema() {
        // Two independent implementations agree on the bytes.
        let codec = GameRoundCodec::get();
        let mut ours = Vec::new();
        codec.encode(&round(), UPLOAD, &mut ours).unwrap();
        let schema = apache_avro::Schema::parse_str(SCHEMA_JSON).unwrap();
        let mut theirs = codec.header().to_vec();
        let wire = WireRef {
            created_timestamp: round().created_timestamp,
            game_instance_id: round().game_instance_id,
            user_id: &round().user_id,
            game_id: round().game_id,
            real_amount_bet: round().real_amount_bet,
            bonus_amount_bet: None,
            real_amount_win: round().real_amount_win,
            bonus_amount_win: round().bonus_amount_win,
            game_name: &round().game_name,
            provider: &round().provider,
            upload_id: UPLOAD,
        };
        apache_avro::write_avro_datum_ref(&schema, &wire, &mut theirs).unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn records_written_with_the_first_schema_are_still_read() {
        // Version 1 had no upload id: the same fields, in the same order, without it.
        let v1 = apache_avro::Schema::parse_str(HISTORY[0]).unwrap();
        let mut bytes = RabinFingerprintHeader::from_schema(&v1).build_header();
        apache_avro::write_avro_datum_ref(&v1, &round(), &mut bytes).unwrap();
        let codec = GameRoundCodec::get();
        assert_ne!(&bytes[..10], codec.header());
        let decoded = codec.decode(&bytes).unwrap();
        assert_eq!(decoded.round, round());
        assert_eq!(decoded.upload_id, "");
    }

    #[test]
    fn messages_without_a_known_header_are_refused() {
        let codec = GameRoundCodec::get();
        let mut bytes = Vec::new();
        codec.encode(&round(), UPLOAD, &mut bytes).unwrap();
        assert!(matches!(
            codec.decode(&bytes[10..]),
            Err(AvroError::UnknownHeader)
        ));
        assert!(matches!(
            codec.decode(&bytes[..14]),
            Err(AvroError::Decode(_))
        ));
    }
}
