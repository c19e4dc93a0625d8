//! The ClickHouse side of the consumer: one `INSERT … FORMAT RowBinary` per batch and table.

use bytes::Bytes;
use clickhouse::Client;
use serde::Serialize;
use sluice_schema::dataset::rowbinary::Converter;

use crate::batcher::Reject;
use crate::kafka::DeadLetter;

/// Table the rounds land in, every version of each (see
/// `schemas/clickhouse/0006_round_versions.sql` and docs/PROCESSING.md).
pub const ROUND_VERSIONS_TABLE: &str = "round_versions";

/// Table rejected rows of uploads land in (see `schemas/clickhouse/0005_upload_rejects.sql`).
pub const UPLOAD_REJECTS_TABLE: &str = "upload_rejects";

/// Table undecodable messages land in (see `schemas/clickhouse/0002_quarantine.sql`).
pub const QUARANTINE_TABLE: &str = "quarantine";

/// Inserts `rows` (`RowBinary`, as a [`Converter`] writes them) as one block; returns once
/// ClickHouse acknowledged the whole insert. Each row is checked as the table holds it when it
/// is converted: a record the table cannot hold is poison, kept in the quarantine with the
/// reason, never a substitute.
pub async fn insert_rows(
    client: &Client,
    converter: &Converter,
    rows: &Bytes,
) -> Result<(), clickhouse::error::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert_formatted_with(converter.insert_statement());
    insert.send(rows.clone()).await?;
    insert.end().await
}

/// One row of `upload_rejects`; `received_at` is filled by the server.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct RejectRow<'a> {
    pub upload_id: &'a str,
    pub line: u64,
    pub column_name: &'a str,
    pub reason: &'a str,
}

/// Inserts rejected rows as one block. Keyed by (upload, line), so a repeated batch stores
/// each once (after merges / with FINAL).
pub async fn insert_rejects<'a>(
    client: &Client,
    rejects: impl Iterator<Item = &'a Reject>,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<RejectRow<'_>>(UPLOAD_REJECTS_TABLE).await?;
    for reject in rejects {
        insert
            .write(&RejectRow {
                upload_id: &reject.upload_id,
                line: reject.line,
                column_name: reject.column.as_deref().unwrap_or_default(),
                reason: &reject.reason,
            })
            .await?;
    }
    insert.end().await
}

/// One row of `quarantine`; `received_at` is filled by the server.
#[derive(Debug, clickhouse::Row, Serialize)]
pub struct QuarantineRow<'a> {
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub error: &'a str,
    pub payload_hex: String,
}

/// Inserts messages that could not be stored into the quarantine table as one block.
pub async fn insert_quarantine<'a>(
    client: &Client,
    letters: impl Iterator<Item = DeadLetter<'a>>,
) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<QuarantineRow<'_>>(QUARANTINE_TABLE).await?;
    for letter in letters {
        insert
            .write(&QuarantineRow {
                source_topic: letter.source_topic,
                source_partition: letter.partition,
                source_offset: letter.offset,
                error: letter.error,
                payload_hex: hex::encode(letter.payload),
            })
            .await?;
    }
    insert.end().await
}
