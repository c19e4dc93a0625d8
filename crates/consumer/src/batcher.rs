//! Batches, kept per topic and partition with the offset to resume from once they are durable.
//!
//! The polling loop only copies messages into a [`RawBatch`]; converting it into a [`Batch`] of
//! rows, rejected rows and poison happens in the insert task, on another core, beside the
//! polling. Rounds are converted by the `game_rounds` spec and its recorded versions
//! (`sluice_schema::dataset::rowbinary::Converter`), as every dataset's records are: Avro
//! straight to the `RowBinary` rows of `round_versions`, each checked as the table holds it.

use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_rollup::version_of;
use sluice_schema::dataset::rowbinary::{Converter, Keyed};
use sluice_schema::rejects::RejectRecord;

use crate::kafka::{DeadLetter, Topics};

/// The topics the consumer reads, each with its own record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Game rounds, Avro single-object encoded.
    Rounds,
    /// Rows the producer rejected, as JSON (`schemas/README.md`).
    Rejects,
}

/// A rejected row of an upload, as kept on the rejects topic.
pub type Reject = RejectRecord<'static>;

/// A message that could not be decoded, kept with its position and the reason.
#[derive(Debug, Clone)]
pub struct Poison {
    pub source: Source,
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Poison {
    /// The message as a dead letter (`topics` name its source).
    pub fn letter<'a>(&'a self, topics: &'a Topics) -> DeadLetter<'a> {
        DeadLetter {
            source_topic: topics.name(self.source),
            partition: self.partition,
            offset: self.offset,
            error: &self.error,
            key: &self.key,
            payload: &self.payload,
        }
    }
}

/// A message as fetched: its offset, and where its key and payload are in the partition's
/// buffer.
#[derive(Debug, Clone)]
struct RawRecord {
    offset: i64,
    /// The message's timestamp (milliseconds since the epoch), if it has one.
    timestamp_ms: Option<i64>,
    key: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
}

/// One partition's messages, their bytes copied one after the other into one buffer (one
/// allocation per batch instead of two per message).
#[derive(Debug, Default)]
struct RawPartition {
    records: Vec<RawRecord>,
    data: Vec<u8>,
    /// The next offset to consume: one past the highest offset seen.
    next_offset: i64,
}

impl RawPartition {
    fn append(&mut self, bytes: &[u8]) -> std::ops::Range<usize> {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        start..self.data.len()
    }
}

/// Messages consumed since the last dispatched batch, not yet decoded.
#[derive(Debug, Default)]
pub struct RawBatch {
    partitions: BTreeMap<(Source, i32), RawPartition>,
    messages: usize,
    bytes: usize,
}

impl RawBatch {
    /// Adds a message that came from `partition` of `source` at `offset`.
    pub fn push(
        &mut self,
        source: Source,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: &[u8],
        payload: &[u8],
    ) {
        let batch = self.partitions.entry((source, partition)).or_default();
        batch.next_offset = batch.next_offset.max(offset + 1);
        self.bytes += payload.len();
        let key = batch.append(key);
        let payload = batch.append(payload);
        batch.records.push(RawRecord {
            offset,
            timestamp_ms,
            key,
            payload,
        });
        self.messages += 1;
    }

    /// Nothing consumed since the last dispatch.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn is_full(&self, max_messages: usize, max_bytes: usize) -> bool {
        self.messages >= max_messages || self.bytes >= max_bytes
    }

    /// Forgets the messages of partitions no longer assigned to this instance, without storing
    /// their offsets: their new owner reads them again from the last stored offset.
    /// Returns how many messages were dropped.
    pub fn forget_partitions(&mut self, revoked: &[(Source, i32)]) -> usize {
        let mut dropped = 0;
        for partition in revoked {
            if let Some(batch) = self.partitions.remove(partition) {
                dropped += batch.records.len();
                self.bytes -= batch.records.iter().map(|r| r.payload.len()).sum::<usize>();
            }
        }
        self.messages -= dropped;
        dropped
    }

    /// Converts every message by `converter`: rows of rounds, rejects, and poison for what does
    /// not decode or the table cannot hold.
    pub fn decode(self, converter: &Converter) -> Batch {
        let mut batch = Batch::default();
        let mut rows = Vec::with_capacity(self.bytes + self.bytes / 2);
        for ((source, partition), raw) in self.partitions {
            let decoded = batch.partitions.entry((source, partition)).or_default();
            decoded.next_offset = raw.next_offset;
            for record in raw.records {
                let payload = &raw.data[record.payload.clone()];
                let outcome = match source {
                    Source::Rounds => {
                        let version = version_of(record.timestamp_ms, record.offset);
                        (converter.append_keyed(payload, version, &mut rows))
                            .map(|keyed| batch.keyed.push(keyed))
                    }
                    Source::Rejects => RejectRecord::from_json(payload)
                        .map(|reject| decoded.rejects.push(reject))
                        .map_err(|e| format!("not a reject record: {e}")),
                };
                if let Err(error) = outcome {
                    decoded.poison.push(Poison {
                        source,
                        partition,
                        offset: record.offset,
                        error,
                        key: raw.data[record.key].to_vec(),
                        payload: payload.to_vec(),
                    });
                }
            }
        }
        batch.rows = Bytes::from(rows);
        batch
    }
}

#[derive(Debug, Default)]
struct PartitionBatch {
    rejects: Vec<Reject>,
    poison: Vec<Poison>,
    next_offset: i64,
}

/// A decoded batch: what goes to ClickHouse (and the dead-letter topic), with its offsets.
#[derive(Debug, Default)]
pub struct Batch {
    /// The rounds' rows of `round_versions`, in `RowBinary`, partition by partition, in offset
    /// order within a partition.
    rows: Bytes,
    /// Each row's time and identity, in the same order.
    keyed: Vec<Keyed>,
    partitions: BTreeMap<(Source, i32), PartitionBatch>,
}

impl Batch {
    /// The rounds' rows, in `RowBinary` (`Converter::insert_statement`).
    pub fn row_bytes(&self) -> &Bytes {
        &self.rows
    }

    /// Each round's time and identity (user id, round id), in the order of the rows.
    pub fn keyed(&self) -> &[Keyed] {
        &self.keyed
    }

    /// Every rejected row.
    pub fn rejects(&self) -> impl Iterator<Item = &Reject> {
        self.partitions.values().flat_map(|p| p.rejects.iter())
    }

    /// Every undecodable message, partition by partition.
    pub fn poison(&self) -> impl Iterator<Item = &Poison> {
        self.partitions.values().flat_map(|p| p.poison.iter())
    }

    /// (Topic, partition) → the offset to store once the batch is durable.
    pub fn next_offsets(&self) -> impl Iterator<Item = (Source, i32, i64)> + '_ {
        self.partitions
            .iter()
            .map(|((s, p), b)| (*s, *p, b.next_offset))
    }

    pub fn rows(&self) -> usize {
        self.keyed.len()
    }

    pub fn reject_count(&self) -> usize {
        self.partitions.values().map(|p| p.rejects.len()).sum()
    }

    pub fn poison_count(&self) -> usize {
        self.partitions.values().map(|p| p.poison.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_schema::avro::GameRoundCodec;
    use sluice_schema::dataset::history::History;
    use sluice_schema::dataset::rowbinary::KeyValue;
    use sluice_schema::GameRound;

    fn converter() -> Converter {
        Converter::reading(&History::game_rounds())
    }

    /// Round 1 of a player in game 2, 2019-10-22 08:20:42, no amounts.
    fn round() -> GameRound {
        GameRound {
            created_timestamp: 1_571_732_442_000,
            game_instance_id: 1,
            user_id: sluice_schema::PlayerId::parse("9ece8c4020f8aed10676cd1c56a41889").unwrap(),
            game_id: 2,
            real_amount_bet: None,
            bonus_amount_bet: None,
            real_amount_win: None,
            bonus_amount_win: None,
            game_name: "g".into(),
            provider: "p".into(),
        }
    }

    #[test]
    fn next_offsets_are_one_past_the_highest_seen_per_partition() {
        let mut raw = RawBatch::default();
        raw.push(Source::Rounds, 0, 5, None, b"k", b"x");
        raw.push(Source::Rounds, 0, 3, None, b"k", b"y");
        raw.push(Source::Rounds, 2, 9, None, b"k", b"z");
        raw.push(Source::Rejects, 0, 1, None, b"k", b"w");
        assert_eq!(raw.messages(), 4);
        let batch = raw.decode(&converter());
        assert_eq!(
            batch.next_offsets().collect::<Vec<_>>(),
            [
                (Source::Rounds, 0, 6),
                (Source::Rounds, 2, 10),
                (Source::Rejects, 0, 2)
            ]
        );
        assert_eq!(batch.poison_count(), 4);
        assert_eq!(batch.rows(), 0);
    }

    #[test]
    fn a_revoked_partition_loses_only_its_own_records() {
        let mut raw = RawBatch::default();
        raw.push(Source::Rounds, 1, 5, None, b"k", b"x");
        raw.push(Source::Rounds, 2, 7, None, b"k", b"y");
        raw.push(Source::Rejects, 1, 3, None, b"k", b"z");
        assert_eq!(raw.forget_partitions(&[(Source::Rounds, 3)]), 0);
        assert_eq!(raw.forget_partitions(&[(Source::Rounds, 1)]), 1);
        assert_eq!(raw.messages(), 2);
        assert_eq!(
            raw.decode(&converter()).next_offsets().collect::<Vec<_>>(),
            [(Source::Rounds, 2, 8), (Source::Rejects, 1, 4)]
        );
    }

    #[test]
    fn decoding_splits_rounds_and_rejects_from_poison_and_keeps_poison_positions() {
        let round = GameRound {
            created_timestamp: 0,
            ..round()
        };
        let mut bytes = Vec::new();
        GameRoundCodec::get().encode(&round, "u-1", &mut bytes);
        let mut raw = RawBatch::default();
        raw.push(Source::Rounds, 0, 10, Some(1_764_000_000_000), b"a", &bytes);
        raw.push(Source::Rounds, 0, 11, None, b"b", b"garbage");
        raw.push(
            Source::Rejects,
            0,
            4,
            None,
            b"u-1",
            br#"{"upload_id":"u-1","line":7,"column":null,"reason":"wrong number of fields"}"#,
        );
        raw.push(Source::Rejects, 0, 5, None, b"u-1", &bytes);
        let batch = raw.decode(&converter());
        let user = "9ece8c4020f8aed10676cd1c56a41889";
        assert_eq!(
            batch.keyed(),
            [Keyed {
                seconds: 0,
                key: vec![KeyValue::Text(user.into()), KeyValue::Uint(1)]
            }]
        );
        let version = sluice_rollup::version_of(Some(1_764_000_000_000), 10);
        let mut row = Vec::new();
        converter().append(&bytes, version, &mut row).unwrap();
        assert_eq!(
            batch.row_bytes().as_ref(),
            row,
            "the round's row, as its version"
        );
        assert!(row.windows(3).any(|w| w == b"u-1"), "with its upload");
        let rejects: Vec<_> = batch.rejects().collect();
        assert_eq!((rejects[0].line, rejects[0].column.as_deref()), (7, None));
        let poison: Vec<_> = batch.poison().collect();
        assert_eq!(poison.len(), 2);
        assert_eq!(
            (poison[0].source, poison[0].partition, poison[0].offset),
            (Source::Rounds, 0, 11)
        );
        assert_eq!(poison[0].key, b"b");
        assert_eq!((poison[1].source, poison[1].offset), (Source::Rejects, 5));
        assert_eq!(
            batch.next_offsets().collect::<Vec<_>>(),
            [(Source::Rounds, 0, 12), (Source::Rejects, 0, 6)]
        );
    }

    #[test]
    fn a_round_written_with_the_first_schema_lands_with_an_empty_upload() {
        use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
        let v1 = include_str!("../../../schemas/history/game_round.v1.avsc");
        let v1 = apache_avro::Schema::parse_str(v1).unwrap();
        let mut bytes = RabinFingerprintHeader::from_schema(&v1).build_header();
        apache_avro::write_avro_datum_ref(&v1, &round(), &mut bytes).unwrap();
        let mut current = Vec::new();
        GameRoundCodec::get().encode(&round(), "", &mut current);
        let mut raw = RawBatch::default();
        raw.push(Source::Rounds, 0, 1, None, b"k", &bytes);
        raw.push(Source::Rounds, 0, 2, None, b"k", &current);
        let batch = raw.decode(&converter());
        assert_eq!(batch.poison_count(), 0);
        let (mut v1_row, mut current_row) = (Vec::new(), Vec::new());
        let converter = converter();
        converter.append(&bytes, 7, &mut v1_row).unwrap();
        converter.append(&current, 7, &mut current_row).unwrap();
        assert_eq!(v1_row, current_row, "the same row, its upload empty");
        assert_eq!(batch.keyed()[0], batch.keyed()[1]);
    }

    #[test]
    fn a_round_the_table_cannot_hold_is_poison_naming_the_field_never_a_substitute() {
        let good = round();
        let before_1970 = GameRound {
            created_timestamp: -1,
            ..good.clone()
        };
        let after_2105 = GameRound {
            created_timestamp: 4_291_747_200_000,
            ..good.clone()
        };
        let negative_id = GameRound {
            game_instance_id: -5,
            ..good.clone()
        };
        let nul = GameRound {
            provider: "Play\0n GO".into(),
            ..good.clone()
        };
        let mut raw = RawBatch::default();
        for (offset, round) in [good, before_1970, after_2105, negative_id, nul]
            .iter()
            .enumerate()
        {
            let mut bytes = Vec::new();
            GameRoundCodec::get().encode(round, "u-1", &mut bytes);
            raw.push(Source::Rounds, 0, offset as i64, None, b"k", &bytes);
        }
        let batch = raw.decode(&converter());
        assert_eq!(batch.rows(), 1);
        let errors: Vec<_> = batch.poison().map(|p| p.error.as_str()).collect();
        assert_eq!(errors.len(), 4);
        assert!(
            errors[0].starts_with("created_timestamp: out of range"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("created_timestamp: out of range"),
            "{errors:?}"
        );
        assert_eq!(errors[2], "game_instance_id: negative");
        assert_eq!(errors[3], "provider: contains a NUL character");
    }
}
