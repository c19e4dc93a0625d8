//! `bench convert`: the consumer's side of issue 14's speed target. Game-round Avro messages
//! (as the producer writes them) → ClickHouse rows, through the generic converter compiled from
//! `datasets/game_rounds.toml` (`dataset::rowbinary::Converter`: Avro straight to RowBinary,
//! checked as the table holds it) against the hand-written path's decoding alone
//! (`GameRoundCodec::decode`, which the rounds' consumer runs before it builds and serialises
//! its rows): a lower bound of the hand-written cost, so the ratio flatters the hand-written
//! side. Messages are held in memory; runs alternate and the best of each is compared.

use std::time::{Duration, Instant};

use sluice_schema::avro::GameRoundCodec;
use sluice_schema::dataset::plan::{Plan, Record};
use sluice_schema::dataset::rowbinary::Converter;
use sluice_schema::dataset::{Spec, GAME_ROUNDS_TOML};
use sluice_testkit::records::{self, Format};

use crate::bench::println_table;

pub async fn convert(rows: u64, runs: u32, dataset: Option<String>) -> anyhow::Result<()> {
    let game_rounds = Spec::parse("datasets/game_rounds.toml", GAME_ROUNDS_TOML)?;
    let messages = messages_of(&game_rounds, rows).await?;
    let converter = Converter::compile(&game_rounds);
    let other = match &dataset {
        Some(name) => {
            let path =
                sluice_testkit::stack::workspace_root().join(format!("datasets/{name}.toml"));
            let spec = Spec::read(&path)?;
            Some((Converter::compile(&spec), messages_of(&spec, rows).await?))
        }
        None => None,
    };
    let (mut best_hand, mut best_generic) = (Duration::MAX, Duration::MAX);
    let mut table = vec![("messages", messages.len().to_string())];
    let rate = |n: usize, d: Duration| format!("{:.0} rows/s", n as f64 / d.as_secs_f64());
    for run in 1..=runs {
        let hand = decoded(&messages)?;
        let generic = converted(&converter, &messages)?;
        (best_hand, best_generic) = (best_hand.min(hand), best_generic.min(generic));
        let mut line = format!(
            "{run}: hand-written decoding {}, generic conversion {}",
            rate(messages.len(), hand),
            rate(messages.len(), generic)
        );
        if let (Some(name), Some((converter, messages))) = (&dataset, &other) {
            let time = converted(converter, messages)?;
            line += &format!("; {name} converted: {}", rate(messages.len(), time));
        }
        table.push(("run", line));
    }
    let ratio = best_hand.as_secs_f64() / best_generic.as_secs_f64();
    table.push((
        "generic ÷ hand-written decoding (best runs)",
        format!("{ratio:.3}× the rate"),
    ));
    println_table(&table);
    Ok(())
}

/// `rows` generated records of `spec`, encoded by its plan as the producer sends them.
async fn messages_of(spec: &Spec, rows: u64) -> anyhow::Result<Vec<Vec<u8>>> {
    let plan = Plan::compile(spec);
    let bytes = records::file(spec, rows, 11, Format::Csv);
    let mut reader = csv_async::AsyncReaderBuilder::new().create_reader(&bytes[..]);
    let bound = plan.bind_csv(reader.byte_headers().await?)?;
    let (mut row, mut record) = (csv_async::ByteRecord::new(), Record::new());
    let mut messages = Vec::with_capacity(rows as usize);
    let mut line = 1;
    while reader.read_byte_record(&mut row).await? {
        line += 1;
        let unchecked = sluice_schema::csv::RowBytes::Unchecked;
        if bound
            .encode_csv(&plan, &row, line, "bench-convert", unchecked, &mut record)
            .is_ok()
        {
            messages.push(record.bytes().to_vec());
        }
    }
    Ok(messages)
}

fn decoded(messages: &[Vec<u8>]) -> anyhow::Result<Duration> {
    let codec = GameRoundCodec::get();
    let mut kept = 0_i64;
    let start = Instant::now();
    for message in messages {
        let envelope = codec.decode(message)?;
        kept = kept.wrapping_add(envelope.round.game_instance_id);
    }
    let elapsed = start.elapsed();
    std::hint::black_box(kept);
    Ok(elapsed)
}

fn converted(converter: &Converter, messages: &[Vec<u8>]) -> anyhow::Result<Duration> {
    let mut out = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    for (version, message) in (1..).zip(messages) {
        if out.len() > 1 << 20 {
            out.clear();
        }
        converter
            .append(message, version, &mut out)
            .map_err(|reason| anyhow::anyhow!("{reason}"))?;
    }
    let elapsed = start.elapsed();
    std::hint::black_box(out.len());
    Ok(elapsed)
}
