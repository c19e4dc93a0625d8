//! Developer tasks, run as `cargo xtask <task>`.
//!
//! - `gen`: writes a generated game-round export (the real export's shape: UTF-16 BE with a
//!   BOM, CRLF, `NaN`/empty money, quoted names) and prints per-player totals as JSON lines
//!   with `--totals`.
//! - `datasets check`: every spec of `datasets/` against its recorded versions
//!   (`datasets/history/`): as recorded, compatible (`--record` records it) or refused.
//! - `bench producer`: upload → acknowledged rows/s beside the parse + encode baseline.
//! - `bench parse`: the parse + encode baseline alone (no services), wall clock and per core.
//! - `bench plan`: game rounds mapped by the dataset plan against the hand-written mapping.
//! - `bench consumer`: topic → ClickHouse rows/s beside a `clickhouse-client` CSV load.
//! - `bench watcher`: files/hour for many small files and rows/s for one large file, beside
//!   the upload path's rate from the same run.
//! - `bench query`: the six questions of issue 13 through the gateway, from raw rows and from
//!   the rollup, beside the same questions asked directly of the rollup table.
//! - `bench freshness`: a steady ingest while the processor runs; how long until each batch is
//!   in the gateway's answers and in the hourly rollup.

mod bench;
mod bench_convert;
mod bench_freshness;
mod bench_plan;
mod bench_query;
mod bench_watcher;
mod datasets;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sluice_schema::dataset::{Catalog, GAME_ROUNDS};
use sluice_testkit::generate::{self, Encoding, Options};

#[derive(Parser)]
#[command(about = "Sluice developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Measure a part of the pipeline against a baseline from the same run.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
    /// Write a generated game-round export, or rows of another dataset (`--dataset`).
    Gen {
        /// A dataset of `datasets/` other than game_rounds: write its rows, generated from its
        /// spec, in `--format` (the game-round options below do not apply).
        #[arg(long)]
        dataset: Option<String>,
        /// With `--dataset`: csv, jsonl or parquet.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Data rows to write.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// utf16be (like the real export), utf16le, utf8 or utf8bom.
        #[arg(long, default_value = "utf16be")]
        encoding: String,
        /// Make every n-th row malformed.
        #[arg(long)]
        bad_every: Option<u64>,
        /// Seed of the generator; the same seed writes the same file.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Distinct players.
        #[arg(long, default_value_t = 20)]
        players: usize,
        /// Where to write the file.
        #[arg(long)]
        out: PathBuf,
        /// Also write the expected per-player totals, as JSON lines, to this file.
        #[arg(long)]
        totals: Option<PathBuf>,
    },
    /// Dataset specs and their recorded versions.
    Datasets {
        #[command(subcommand)]
        what: Datasets,
    },
    /// Print the statements the services apply on a ClickHouse cluster (their
    /// `…_CLICKHOUSE_CLUSTER` setting), generated from `schemas/clickhouse/`, then those of
    /// every other dataset's tables, generated from its spec.
    ClusterDdl {
        /// The database the services use.
        #[arg(long, default_value = "sluice")]
        database: String,
        /// The cluster's name in `remote_servers`.
        #[arg(long, default_value = "sluice")]
        cluster: String,
        /// The directory of the specs (default: the workspace's `datasets/`).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum Datasets {
    /// Compare every `<name>.toml` with its latest recorded version (`history/<name>.v<N>.toml`):
    /// as recorded → ok; only nullable or defaulted columns appended at the end → compatible,
    /// to be recorded; anything else → refused, with the field and the fix. Exits 1 unless
    /// every dataset is ok.
    Check {
        /// The directory of the specs (default: the workspace's `datasets/`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Record each compatible spec (and each spec without a recorded version) as its next
        /// version.
        #[arg(long)]
        record: bool,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Upload → every record acknowledged by Kafka (needs `scripts/dev services`).
    Producer {
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
    },
    /// Parse + encode alone, with and without SHA-256: rows/s and rows per CPU-second.
    Parse {
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Repetitions of each measurement.
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// CSV records → Avro messages for game rounds: the dataset plan (`datasets/game_rounds.toml`)
    /// against the hand-written mapping, over the same records held in memory.
    Plan {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Also the plan's rate for this dataset's generated rows (`datasets/<name>.toml`).
        #[arg(long)]
        dataset: Option<String>,
        /// Repetitions of each measurement (alternated; the best of each is compared).
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// Game-round messages → ClickHouse rows: the generic converter (`datasets/game_rounds.toml`)
    /// against the hand-written path's decoding alone, in memory.
    Convert {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Also the converter's rate for this dataset's generated records.
        #[arg(long)]
        dataset: Option<String>,
        /// Repetitions of each measurement (alternated; the best of each is compared).
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// Pre-filled topic → ClickHouse, against `clickhouse-client` (needs `scripts/dev services`).
    Consumer {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
    },
    /// The gateway's answers from raw rows and from the rollup, beside the rollup table asked
    /// directly, over generated play sessions (needs `scripts/dev services`).
    Query {
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Timed answers per question from the rollup and from the table (after a warm-up).
        #[arg(long, default_value_t = 21)]
        samples: usize,
        /// Timed answers per question with every hour read from raw rows.
        #[arg(long, default_value_t = 3)]
        raw_samples: usize,
    },
    /// A steady ingest (a live stream: rows of the current second, marked as the consumer
    /// marks them) while the release processor and gateway run: how long until each second's
    /// batch is in the answers and in the hourly rollup (needs `scripts/dev services`).
    Freshness {
        /// Rows written each second.
        #[arg(long, default_value_t = 200_000)]
        rate: u64,
        /// Seconds of ingest.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Dropped files → committed, beside the upload path (needs `scripts/dev services`).
    Watcher {
        /// Small files to drop at once.
        #[arg(long, default_value_t = 10_000)]
        files: u64,
        /// Rows in each small file.
        #[arg(long, default_value_t = 20)]
        rows_per_file: u64,
        /// Rows of the large file (the producer benchmark's export).
        #[arg(long, default_value_t = 2_000_000)]
        rows: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Bench {
            what: Bench::Producer { rows },
        } => bench::producer(rows).await?,
        Task::Bench {
            what: Bench::Parse { rows, runs },
        } => bench::parse(rows, runs).await?,
        Task::Bench {
            what:
                Bench::Plan {
                    rows,
                    runs,
                    dataset,
                },
        } => bench_plan::plan(rows, runs, dataset).await?,
        Task::Bench {
            what:
                Bench::Convert {
                    rows,
                    dataset,
                    runs,
                },
        } => bench_convert::convert(rows, runs, dataset).await?,
        Task::Bench {
            what: Bench::Consumer { rows },
        } => bench::consumer(rows).await?,
        Task::Bench {
            what:
                Bench::Query {
                    rows,
                    samples,
                    raw_samples,
                },
        } => bench_query::query(rows, samples, raw_samples).await?,
        Task::Bench {
            what: Bench::Freshness { rate, seconds },
        } => bench_freshness::freshness(rate, seconds).await?,
        Task::Bench {
            what:
                Bench::Watcher {
                    files,
                    rows_per_file,
                    rows,
                },
        } => bench_watcher::watcher(files, rows_per_file, rows).await?,
        Task::Datasets {
            what: Datasets::Check { dir, record },
        } => {
            let shipped = || sluice_testkit::stack::workspace_root().join("datasets");
            let dir = dir.unwrap_or_else(|| shipped().canonicalize().unwrap_or_else(|_| shipped()));
            if !datasets::check(&dir, record)? {
                std::process::exit(1);
            }
        }
        Task::ClusterDdl {
            database,
            cluster,
            dir,
        } => {
            let dir =
                dir.unwrap_or_else(|| sluice_testkit::stack::workspace_root().join("datasets"));
            let catalog = sluice_schema::dataset::Catalog::read(&dir)?;
            std::io::stdout().write_all(cluster_ddl(&database, &cluster, &catalog).as_bytes())?
        }
        Task::Gen {
            dataset: Some(dataset),
            format,
            rows,
            seed,
            out,
            ..
        } => {
            let Some(format) = sluice_testkit::records::Format::parse(&format) else {
                bail!("unknown format `{format}`: use csv, jsonl or parquet");
            };
            let path =
                sluice_testkit::stack::workspace_root().join(format!("datasets/{dataset}.toml"));
            let spec = sluice_schema::dataset::Spec::read(&path)?;
            let bytes = sluice_testkit::records::file(&spec, rows, seed, format);
            std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
        }
        Task::Gen {
            dataset: None,
            format: _,
            rows,
            encoding,
            bad_every,
            seed,
            players,
            out,
            totals,
        } => {
            let Some(encoding) = Encoding::parse(&encoding) else {
                bail!("unknown encoding `{encoding}`: use utf16be, utf16le, utf8 or utf8bom");
            };
            let options = Options {
                rows,
                seed,
                encoding,
                players,
                bad_row_every: bad_every,
                ..Options::new(rows)
            };
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            let summary = generate::write(&options, file)?;
            if let Some(path) = totals {
                let mut file = File::create(&path)?;
                for (player, t) in &summary.totals {
                    writeln!(
                        file,
                        r#"{{"player_id":"{player}","rounds":{},"real_amount_bet":{},"bonus_amount_bet":{},"real_amount_win":{},"bonus_amount_win":{},"ggr":{},"scale":4}}"#,
                        t.rounds,
                        t.real_amount_bet,
                        t.bonus_amount_bet,
                        t.real_amount_win,
                        t.bonus_amount_win,
                        t.ggr()
                    )?;
                }
            }
            eprintln!(
                "Wrote {} rows ({} good, {} bad) to {}.",
                summary.rows,
                summary.good_rows,
                summary.bad_lines.len(),
                out.display()
            );
        }
    }
    Ok(())
}

/// Every statement of the sharded layout, in the order the services apply them: the
/// migrations', then each dataset's of `catalog` (but `game_rounds`, whose are the migrations).
fn cluster_ddl(database: &str, cluster: &str, catalog: &Catalog) -> String {
    use sluice_schema::migrations::{cluster, of_a_cluster};
    let statements = of_a_cluster().flat_map(|m| cluster::statements(m, database, cluster));
    let datasets = (catalog.iter())
        .filter(|dataset| dataset.spec.name != GAME_ROUNDS)
        .flat_map(|dataset| sluice_rollup::datasets::objects(&dataset.spec))
        .flat_map(|(object, sql)| cluster::statements_of(&object, &sql, database, cluster));
    std::iter::once(cluster::create_database(database, cluster))
        .chain(statements)
        .chain(datasets)
        .map(|s| format!("{};\n\n", s.trim_end()))
        .collect()
}
