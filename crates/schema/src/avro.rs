//! The Avro encoding of a [`GameRound`] on the wire: Avro single-object encoding
//! (`C3 01`, the schema's 8-byte CRC-64-AVRO fingerprint, then the binary datum).
//!
//! Writing is the producer's hot loop (millions of records a second), so a record is written
//! field by field in the schema's order: Avro's binary encoding of this record is a sequence of
//! zigzag varints (`long`, union branch indexes, string lengths) and string bytes, and the
//! varints come from `integer-encoding`. Tests hold the writer to the schema file (field names,
//! types and order) and to apache-avro's bytes for the same records. Reading uses
//! `serde_avro_fast`, which deserialises straight into Rust structs under any known schema
//! version; apache-avro parses the schemas and computes their fingerprints. Every record carries
//! the id of the upload it arrived in, beside the round itself.
//!
//! Messages written with an earlier schema (see `schemas/history/`) are still read: the
//! fingerprint in their header picks the reader schema, and fields they lack take their default.

use std::sync::OnceLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use serde::Deserialize;

use crate::dataset::plan::write_long;
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

/// Appends the binary datum of `schemas/game_round.avsc`: every field in the schema's order.
/// `the_writer_follows_the_schema_file` keeps this list and the file in step.
fn write_datum(round: &GameRound, upload_id: &str, out: &mut Vec<u8>) {
    write_long(round.created_timestamp, out);
    write_long(round.game_instance_id, out);
    write_string(round.user_id.as_str(), out);
    write_long(round.game_id, out);
    write_optional_money(round.real_amount_bet, out);
    write_optional_money(round.bonus_amount_bet, out);
    write_optional_money(round.real_amount_win, out);
    write_optional_money(round.bonus_amount_win, out);
    write_string(&round.game_name, out);
    write_string(&round.provider, out);
    write_string(upload_id, out);
}

/// An Avro `string`: its length in bytes as a `long`, then the UTF-8 bytes.
#[inline]
fn write_string(value: &str, out: &mut Vec<u8>) {
    write_long(value.len() as i64, out);
    out.extend_from_slice(value.as_bytes());
}

/// A `["null", "long"]` union: the branch index as a `long` (0 null, 1 long), then the value.
#[inline]
fn write_optional_money(value: Option<Money>, out: &mut Vec<u8>) {
    match value {
        None => write_long(0, out),
        Some(money) => {
            write_long(1, out);
            write_long(money.scaled(), out);
        }
    }
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
    pub fn encode(&self, round: &GameRound, upload_id: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.current.header);
        write_datum(round, upload_id, out);
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
        codec.encode(&round(), UPLOAD, &mut bytes);
        assert_eq!(&bytes[..2], [0xC3, 0x01]);
        let decoded = codec.decode(&bytes).unwrap();
        assert_eq!(decoded.round, round());
        assert_eq!(decoded.upload_id, UPLOAD);
    }

    /// Rounds that reach every corner of the encoding: negative, zero and extreme numbers, each
    /// amount present or null, empty, long (two-byte length) and non-ASCII strings.
    fn varied_rounds() -> Vec<GameRound> {
        let money = [
            None,
            Some(Money::ZERO),
            Some(Money::from_scaled(-1)),
            Some(Money::from_scaled(63)),
            Some(Money::from_scaled(64)),
            Some(Money::from_scaled(crate::domain::MONEY_MAX_SCALED)),
            Some(Money::from_scaled(-crate::domain::MONEY_MAX_SCALED)),
        ];
        let numbers = [0, 1, -1, 63, -64, 64, 1_571_732_442_000, i64::MAX, i64::MIN];
        let names = ["", "Reactoonz", "Book of Dead \"Ü\" 😀", &"x".repeat(200)];
        (0..200)
            .map(|i: usize| GameRound {
                created_timestamp: numbers[i % numbers.len()],
                game_instance_id: numbers[(i / 2) % numbers.len()],
                user_id: PlayerId::parse(&format!("{:032x}", i * 7919)).unwrap(),
                game_id: numbers[(i / 3) % numbers.len()],
                real_amount_bet: money[i % money.len()],
                bonus_amount_bet: money[(i / 2) % money.len()],
                real_amount_win: money[(i / 3) % money.len()],
                bonus_amount_win: money[(i / 5) % money.len()],
                game_name: names[i % names.len()].to_owned(),
                provider: names[(i / 4) % names.len()].to_owned(),
            })
            .collect()
    }

    #[test]
    fn the_encoding_is_the_one_apache_avro_writes_for_the_schema() {
        // An independent implementation, given the values by field name, writes the same bytes.
        use apache_avro::types::{Record, Value};
        let codec = GameRoundCodec::get();
        let schema = apache_avro::Schema::parse_str(SCHEMA_JSON).unwrap();
        let scaled = |m: Option<Money>| m.map(Money::scaled);
        for (i, round) in varied_rounds().into_iter().enumerate() {
            let upload = if i % 3 == 0 { "" } else { UPLOAD };
            let mut record = Record::new(&schema).unwrap();
            record.put("created_timestamp", round.created_timestamp);
            record.put("game_instance_id", round.game_instance_id);
            record.put("user_id", round.user_id.as_str());
            record.put("game_id", round.game_id);
            record.put("real_amount_bet", scaled(round.real_amount_bet));
            record.put("bonus_amount_bet", scaled(round.bonus_amount_bet));
            record.put("real_amount_win", scaled(round.real_amount_win));
            record.put("bonus_amount_win", scaled(round.bonus_amount_win));
            record.put("game_name", round.game_name.as_str());
            record.put("provider", round.provider.as_str());
            record.put("upload_id", upload);
            let mut theirs = codec.header().to_vec();
            theirs.extend(apache_avro::to_avro_datum(&schema, Value::from(record)).unwrap());

            let mut ours = Vec::new();
            codec.encode(&round, upload, &mut ours);
            assert_eq!(ours, theirs, "round {i}: {round:?}");
            let decoded = codec.decode(&ours).unwrap();
            assert_eq!((decoded.round, decoded.upload_id.as_str()), (round, upload));
        }
    }

    #[test]
    fn the_writer_follows_the_schema_file() {
        // `write_datum` writes these fields in this order; a change to the schema file that
        // does not change the writer (and this list) fails here.
        let schema = apache_avro::Schema::parse_str(SCHEMA_JSON).unwrap();
        let apache_avro::Schema::Record(record) = schema else {
            panic!("the schema is a record");
        };
        let fields: Vec<(&str, String)> = record
            .fields
            .iter()
            .map(|f| (f.name.as_str(), format!("{:?}", f.schema)))
            .collect();
        let long = "Long".to_owned();
        let string = "String".to_owned();
        let optional =
            "Union(UnionSchema { schemas: [Null, Long], variant_index: {Null: 0, Long: 1} })"
                .to_owned();
        assert_eq!(
            fields,
            [
                ("created_timestamp", long.clone()),
                ("game_instance_id", long.clone()),
                ("user_id", string.clone()),
                ("game_id", long),
                ("real_amount_bet", optional.clone()),
                ("bonus_amount_bet", optional.clone()),
                ("real_amount_win", optional.clone()),
                ("bonus_amount_win", optional),
                ("game_name", string.clone()),
                ("provider", string.clone()),
                ("upload_id", string),
            ]
        );
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
        codec.encode(&round(), UPLOAD, &mut bytes);
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
