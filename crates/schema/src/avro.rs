//! The Avro encoding of a [`GameRound`] on the wire: Avro single-object encoding
//! (`C3 01`, the schema's 8-byte CRC-64-AVRO fingerprint, then the binary datum), written on
//! apache-avro's serde path so the hot loop never builds `apache_avro::types::Value`s.
//! Reading uses `serde_avro_fast`, which deserialises straight from the bytes (apache-avro 0.21
//! can only decode into `Value`s and convert those, several times slower).

use std::sync::OnceLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::Schema;

use crate::round::GameRound;

/// The schema text, from `schemas/game_round.avsc`.
pub const SCHEMA_JSON: &str = include_str!("../../../schemas/game_round.avsc");

/// Why bytes could not be turned into a [`GameRound`] (or back).
#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("the message does not start with this schema's single-object header")]
    UnknownHeader,
    #[error(transparent)]
    Avro(#[from] Box<apache_avro::Error>),
    #[error("the record does not decode: {0}")]
    Decode(#[from] serde_avro_fast::de::DeError),
}

/// Encodes and decodes game rounds. Cheap to clone references to; build once.
pub struct GameRoundCodec {
    schema: Schema,
    reader_schema: serde_avro_fast::Schema,
    header: Vec<u8>,
}

impl GameRoundCodec {
    /// The process-wide codec.
    pub fn get() -> &'static GameRoundCodec {
        static CODEC: OnceLock<GameRoundCodec> = OnceLock::new();
        CODEC.get_or_init(|| {
            let schema = Schema::parse_str(SCHEMA_JSON).expect("schemas/game_round.avsc is valid");
            let header = RabinFingerprintHeader::from_schema(&schema).build_header();
            let reader_schema = SCHEMA_JSON
                .parse()
                .expect("schemas/game_round.avsc is valid");
            GameRoundCodec {
                schema,
                reader_schema,
                header,
            }
        })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The 10-byte single-object header every message starts with.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Appends the single-object encoding of `round` to `out`.
    pub fn encode(&self, round: &GameRound, out: &mut Vec<u8>) -> Result<(), AvroError> {
        out.extend_from_slice(&self.header);
        apache_avro::write_avro_datum_ref(&self.schema, round, out).map_err(Box::new)?;
        Ok(())
    }

    /// Decodes one message produced by [`encode`](Self::encode).
    pub fn decode(&self, message: &[u8]) -> Result<GameRound, AvroError> {
        let datum = message
            .strip_prefix(self.header.as_slice())
            .ok_or(AvroError::UnknownHeader)?;
        Ok(serde_avro_fast::from_datum_slice(
            datum,
            &self.reader_schema,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Money, PlayerId};

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

    #[test]
    fn rounds_survive_an_encode_decode_round_trip() {
        let codec = GameRoundCodec::get();
        let mut bytes = Vec::new();
        codec.encode(&round(), &mut bytes).unwrap();
        assert_eq!(&bytes[..2], [0xC3, 0x01]);
        assert_eq!(codec.decode(&bytes).unwrap(), round());
    }

    #[test]
    fn messages_without_the_header_are_refused() {
        let codec = GameRoundCodec::get();
        let mut bytes = Vec::new();
        codec.encode(&round(), &mut bytes).unwrap();
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
