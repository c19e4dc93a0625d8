//! A batch of decoded rounds, kept per partition together with the offset to resume from once
//! the batch is durable in ClickHouse.

use std::collections::BTreeMap;

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

#[derive(Debug, Default)]
struct PartitionBatch {
    rounds: Vec<GameRound>,
    poison: Vec<Poison>,
    /// The next offset to consume: one past the highest offset seen.
    next_offset: i64,
}

/// Records consumed since the last successful insert.
#[derive(Debug, Default)]
pub struct Batch {
    partitions: BTreeMap<i32, PartitionBatch>,
    rows: usize,
    bytes: usize,
}

impl Batch {
    /// Adds a decoded round that came from `partition` at `offset`.
    pub fn push(&mut self, partition: i32, offset: i64, payload_bytes: usize, round: GameRound) {
        self.partition(partition, offset).rounds.push(round);
        self.rows += 1;
        self.bytes += payload_bytes;
    }

    /// Records a message that cannot become a round: it goes to quarantine, and its offset
    /// still moves on.
    pub fn quarantine(&mut self, poison: Poison) {
        let (partition, offset) = (poison.partition, poison.offset);
        self.partition(partition, offset).poison.push(poison);
    }

    fn partition(&mut self, partition: i32, offset: i64) -> &mut PartitionBatch {
        let batch = self.partitions.entry(partition).or_default();
        batch.next_offset = batch.next_offset.max(offset + 1);
        batch
    }

    /// Every buffered round, partition by partition, in offset order within a partition.
    pub fn rounds(&self) -> impl Iterator<Item = &GameRound> {
        self.partitions.values().flat_map(|p| p.rounds.iter())
    }

    /// Every quarantined message, partition by partition.
    pub fn poison(&self) -> impl Iterator<Item = &Poison> {
        self.partitions.values().flat_map(|p| p.poison.iter())
    }

    /// Partition → the offset to store once the batch is durable.
    pub fn next_offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.partitions.iter().map(|(p, b)| (*p, b.next_offset))
    }

    /// Nothing consumed since the last flush.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_full(&self, max_rows: usize, max_bytes: usize) -> bool {
        self.rows >= max_rows || self.bytes >= max_bytes
    }

    pub fn poison_count(&self) -> usize {
        self.partitions.values().map(|p| p.poison.len()).sum()
    }

    /// Forgets the records of partitions no longer assigned to this instance, without storing
    /// their offsets: their new owner reads them again from the last stored offset.
    /// Returns how many rounds were dropped.
    pub fn forget_partitions(&mut self, revoked: &[i32]) -> usize {
        let mut dropped = 0;
        for partition in revoked {
            if let Some(batch) = self.partitions.remove(partition) {
                dropped += batch.rounds.len();
            }
        }
        self.rows -= dropped;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poison(partition: i32, offset: i64) -> Poison {
        Poison {
            partition,
            offset,
            error: "bad".into(),
            key: Vec::new(),
            payload: vec![1, 2, 3],
        }
    }

    #[test]
    fn next_offsets_are_one_past_the_highest_seen_per_partition() {
        let mut batch = Batch::default();
        batch.quarantine(poison(0, 5));
        batch.quarantine(poison(0, 3));
        batch.quarantine(poison(2, 9));
        assert_eq!(batch.next_offsets().collect::<Vec<_>>(), [(0, 6), (2, 10)]);
        assert!(!batch.is_empty());
        assert_eq!(batch.poison_count(), 3);
        assert_eq!(batch.rows(), 0);
    }

    #[test]
    fn a_revoked_partition_loses_only_its_own_records() {
        let mut batch = Batch::default();
        batch.quarantine(poison(1, 5));
        batch.quarantine(poison(2, 7));
        assert_eq!(batch.forget_partitions(&[3]), 0);
        assert_eq!(batch.forget_partitions(&[1]), 0);
        assert_eq!(batch.next_offsets().collect::<Vec<_>>(), [(2, 8)]);
    }
}
