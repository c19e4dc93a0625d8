//! Batches, kept per partition with the offset to resume from once they are durable.
//!
//! The polling loop only copies messages into a [`RawBatch`]; decoding into a [`Batch`] of
//! rounds and poison happens in the insert task, on another core, beside the polling.

use std::collections::BTreeMap;

use sluice_schema::avro::GameRoundCodec;
use sluice_schema::GameRound;

/// A message that could not be decoded, kept with its position and the reason.
#[derive(Debug, Clone)]
pub struct Poison {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A message as fetched.
#[derive(Debug, Clone)]
struct RawRecord {
    offset: i64,
    key: Vec<u8>,
    payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct RawPartition {
    records: Vec<RawRecord>,
    /// The next offset to consume: one past the highest offset seen.
    next_offset: i64,
}

/// Messages consumed since the last dispatched batch, not yet decoded.
#[derive(Debug, Default)]
pub struct RawBatch {
    partitions: BTreeMap<i32, RawPartition>,
    messages: usize,
    bytes: usize,
}

impl RawBatch {
    /// Adds a message that came from `partition` at `offset`.
    pub fn push(&mut self, partition: i32, offset: i64, key: &[u8], payload: &[u8]) {
        let batch = self.partitions.entry(partition).or_default();
        batch.next_offset = batch.next_offset.max(offset + 1);
        batch.records.push(RawRecord {
            offset,
            key: key.to_vec(),
            payload: payload.to_vec(),
        });
        self.messages += 1;
        self.bytes += payload.len();
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
    pub fn forget_partitions(&mut self, revoked: &[i32]) -> usize {
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

    /// Decodes every message: rounds, and poison for what does not decode.
    pub fn decode(self) -> Batch {
        let codec = GameRoundCodec::get();
        let mut batch = Batch::default();
        for (partition, raw) in self.partitions {
            let decoded = batch.partitions.entry(partition).or_default();
            decoded.next_offset = raw.next_offset;
            for record in raw.records {
                match codec.decode(&record.payload) {
                    Ok(round) => decoded.rounds.push(round),
                    Err(error) => decoded.poison.push(Poison {
                        partition,
                        offset: record.offset,
                        error: error.to_string(),
                        key: record.key,
                        payload: record.payload,
                    }),
                }
            }
        }
        batch
    }
}

#[derive(Debug, Default)]
struct PartitionBatch {
    rounds: Vec<GameRound>,
    poison: Vec<Poison>,
    next_offset: i64,
}

/// A decoded batch: what goes to ClickHouse (and the dead-letter topic), with its offsets.
#[derive(Debug, Default)]
pub struct Batch {
    partitions: BTreeMap<i32, PartitionBatch>,
}

impl Batch {
    /// Every round, partition by partition, in offset order within a partition.
    pub fn rounds(&self) -> impl Iterator<Item = &GameRound> {
        self.partitions.values().flat_map(|p| p.rounds.iter())
    }

    /// Every undecodable message, partition by partition.
    pub fn poison(&self) -> impl Iterator<Item = &Poison> {
        self.partitions.values().flat_map(|p| p.poison.iter())
    }

    /// Partition → the offset to store once the batch is durable.
    pub fn next_offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.partitions.iter().map(|(p, b)| (*p, b.next_offset))
    }

    pub fn rows(&self) -> usize {
        self.partitions.values().map(|p| p.rounds.len()).sum()
    }

    pub fn poison_count(&self) -> usize {
        self.partitions.values().map(|p| p.poison.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_offsets_are_one_past_the_highest_seen_per_partition() {
        let mut raw = RawBatch::default();
        raw.push(0, 5, b"k", b"x");
        raw.push(0, 3, b"k", b"y");
        raw.push(2, 9, b"k", b"z");
        assert_eq!(raw.messages(), 3);
        let batch = raw.decode();
        assert_eq!(batch.next_offsets().collect::<Vec<_>>(), [(0, 6), (2, 10)]);
        assert_eq!(batch.poison_count(), 3);
        assert_eq!(batch.rows(), 0);
    }

    #[test]
    fn a_revoked_partition_loses_only_its_own_records() {
        let mut raw = RawBatch::default();
        raw.push(1, 5, b"k", b"x");
        raw.push(2, 7, b"k", b"y");
        assert_eq!(raw.forget_partitions(&[3]), 0);
        assert_eq!(raw.forget_partitions(&[1]), 1);
        assert_eq!(raw.messages(), 1);
        assert_eq!(raw.decode().next_offsets().collect::<Vec<_>>(), [(2, 8)]);
    }

    #[test]
    fn decoding_splits_rounds_from_poison_and_keeps_poison_positions() {
        let round = GameRound {
            created_timestamp: 0,
            game_instance_id: 1,
            user_id: sluice_schema::PlayerId::parse("9ece8c4020f8aed10676cd1c56a41889").unwrap(),
            game_id: 2,
            real_amount_bet: None,
            bonus_amount_bet: None,
            real_amount_win: None,
            bonus_amount_win: None,
            game_name: "g".into(),
            provider: "p".into(),
        };
        let mut bytes = Vec::new();
        GameRoundCodec::get().encode(&round, &mut bytes).unwrap();
        let mut raw = RawBatch::default();
        raw.push(0, 10, b"a", &bytes);
        raw.push(0, 11, b"b", b"garbage");
        let batch = raw.decode();
        assert_eq!(batch.rounds().collect::<Vec<_>>(), [&round]);
        let poison: Vec<_> = batch.poison().collect();
        assert_eq!((poison[0].partition, poison[0].offset), (0, 11));
        assert_eq!(poison[0].key, b"b");
        assert_eq!(batch.next_offsets().collect::<Vec<_>>(), [(0, 12)]);
    }
}
