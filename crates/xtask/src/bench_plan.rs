//! `bench plan`: CSV records → Avro messages for game rounds, through the plan compiled from
//! `datasets/game_rounds.toml` (issue 14) against the hand-written mapping it replaces
//! (`HeaderMap` + `GameRoundCodec`). The records are read once into memory, so both sides time
//! only the mapping and the encoding; runs alternate, and the best of each is compared.

use std::time::{Duration, Instant};

use anyhow::Context;
use csv_async::ByteRecord;
use sluice_schema::avro::GameRoundCodec;
use sluice_schema::csv::{HeaderMap, RowBytes};
use sluice_schema::dataset::plan::{Bound, Plan, Record};
use sluice_schema::dataset::{Spec, GAME_ROUNDS_TOML};
use sluice_testkit::generate::{self, Options};

use crate::bench::println_table;

const UPLOAD_ID: &str = "bench-plan-0123456789abcdef";

pub async fn plan(rows: u64, runs: u32, dataset: Option<String>) -> anyhow::Result<()> {
    let (header, records) = records(rows).await?;
    let other = match &dataset {
        Some(name) => Some(dataset_records(name, rows).await?),
        None => None,
    };
    let hand = HeaderMap::parse(&header)?;
    let spec = Spec::parse("datasets/game_rounds.toml", GAME_ROUNDS_TOML)?;
    let plan = Plan::compile(&spec);
    let bound = plan.bind_csv(&header)?;
    let (mut best_hand, mut best_plan) = (Duration::MAX, Duration::MAX);
    let mut table = vec![("rows", rows.to_string())];
    for run in 1..=runs {
        let hand_time = hand_written(&hand, &records)?;
        let plan_time = planned(&plan, &bound, &records)?;
        best_hand = best_hand.min(hand_time);
        best_plan = best_plan.min(plan_time);
        let rate = |d: Duration| format!("{:.0} rows/s", rows as f64 / d.as_secs_f64());
        let mut line = format!(
            "{run}: hand-written {}, plan {}",
            rate(hand_time),
            rate(plan_time)
        );
        if let (Some(name), Some((plan, bound, records, bytes))) = (&dataset, &other) {
            let time = planned(plan, bound, records)?;
            let mib = *bytes as f64 / 1_048_576.0 / time.as_secs_f64();
            line += &format!("; {name} through its plan: {}, {mib:.0} MiB/s", rate(time));
        }
        table.push(("run", line));
    }
    let ratio = best_hand.as_secs_f64() / best_plan.as_secs_f64();
    table.push((
        "plan ÷ hand-written (best runs)",
        format!("{ratio:.3}× the rate"),
    ));
    println_table(&table);
    Ok(())
}

/// A dataset's generated rows (CSV), its plan bound to their header, and their size.
async fn dataset_records(
    name: &str,
    rows: u64,
) -> anyhow::Result<(Plan, Bound, Vec<ByteRecord>, usize)> {
    let path = sluice_testkit::stack::workspace_root().join(format!("datasets/{name}.toml"));
    let spec = Spec::read(&path)?;
    let plan = Plan::compile(&spec);
    let bytes = sluice_testkit::records::file(&spec, rows, 7, sluice_testkit::records::Format::Csv);
    let mut reader = csv_async::AsyncReaderBuilder::new().create_reader(&bytes[..]);
    let bound = plan.bind_csv(reader.byte_headers().await?)?;
    let mut records = Vec::with_capacity(rows as usize);
    let mut record = ByteRecord::new();
    while reader.read_byte_record(&mut record).await? {
        records.push(record.clone());
    }
    Ok((plan, bound, records, bytes.len()))
}

/// A generated export's header and its records (UTF-8, in memory).
async fn records(rows: u64) -> anyhow::Result<(ByteRecord, Vec<ByteRecord>)> {
    let mut options = Options::new(rows);
    options.encoding = generate::Encoding::Utf8;
    let export = generate::export(&options);
    let mut reader = csv_async::AsyncReaderBuilder::new().create_reader(&export.bytes[..]);
    let header = reader.byte_headers().await?.clone();
    let mut records = Vec::with_capacity(rows as usize);
    let mut record = ByteRecord::new();
    while reader.read_byte_record(&mut record).await? {
        records.push(record.clone());
    }
    Ok((header, records))
}

fn hand_written(columns: &HeaderMap, records: &[ByteRecord]) -> anyhow::Result<Duration> {
    let codec = GameRoundCodec::get();
    let mut round = columns
        .parse_row(&records[0], 2)
        .ok()
        .context("a good first row")?;
    let (mut message, mut bytes) = (Vec::with_capacity(256), 0);
    let start = Instant::now();
    for (line, record) in (2..).zip(records) {
        if columns
            .parse_row_into(record, line, &mut round, RowBytes::NulFree)
            .is_ok()
        {
            message.clear();
            codec.encode(&round, UPLOAD_ID, &mut message);
            bytes += message.len() + round.user_id.as_str().len();
        }
    }
    let elapsed = start.elapsed();
    std::hint::black_box(bytes);
    Ok(elapsed)
}

fn planned(
    plan: &Plan,
    bound: &sluice_schema::dataset::plan::Bound,
    records: &[ByteRecord],
) -> anyhow::Result<Duration> {
    let mut record = Record::new();
    let mut bytes = 0;
    let start = Instant::now();
    for (line, row) in (2..).zip(records) {
        if bound
            .encode_csv(plan, row, line, UPLOAD_ID, RowBytes::NulFree, &mut record)
            .is_ok()
        {
            bytes += record.bytes().len() + record.key().len();
        }
    }
    let elapsed = start.elapsed();
    std::hint::black_box(bytes);
    Ok(elapsed)
}
