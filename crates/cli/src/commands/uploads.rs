//! `sluice uploads [ID]` and `sluice rejects ID`.

use std::io::Write;
use std::time::{Duration, Instant};

use super::segment;
use crate::args::RejectsArgs;
use crate::client::Producer;
use crate::error::{CliError, Outcome};
use crate::output::{upload_summary, write_table, Format, Record, Rows};
use crate::settings::Settings;

/// Rejects asked per request (the producer's maximum).
const REJECTS_PAGE: u32 = 10_000;
/// How often the rejects are asked again while the consumer still stores them.
const REJECTS_POLL: Duration = Duration::from_millis(500);

const RUNNING_COLUMNS: [&str; 7] = [
    "upload_id",
    "started_at",
    "rows_read",
    "accepted",
    "rejected",
    "bytes",
    "idempotency_key",
];

pub async fn uploads(
    settings: &Settings,
    id: Option<String>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let producer = Producer::new(settings);
    match id {
        Some(id) => {
            let status = producer
                .get(&format!("/uploads/{}", segment(&id)), &[])
                .await?;
            if json {
                writeln!(out, "{status}")?;
            } else {
                write!(out, "{}", upload_summary(None, &status, false))?;
            }
        }
        None => {
            let running = producer.get("/uploads", &[]).await?;
            if json {
                writeln!(out, "{running}")?;
                return Ok(Outcome::Done);
            }
            let uploads = running["in_progress"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if uploads.is_empty() {
                writeln!(out, "No upload is running.")?;
                return Ok(Outcome::Done);
            }
            let rows: Vec<Record> = uploads
                .iter()
                .map(|u| {
                    Record(
                        RUNNING_COLUMNS
                            .iter()
                            .map(|&c| (c.to_owned(), u[c].clone()))
                            .collect(),
                    )
                })
                .collect();
            let columns: Vec<String> = RUNNING_COLUMNS.iter().map(|&c| c.to_owned()).collect();
            write_table(out, &columns, &rows)?;
        }
    }
    Ok(Outcome::Done)
}

/// Every reject, page by page (`next_after_line`); while fewer are stored than the receipt
/// counts, asks again from the last one seen, for up to `--wait` seconds.
pub async fn rejects(
    settings: &Settings,
    args: RejectsArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let producer = Producer::new(settings);
    let format = args.format.unwrap_or(if args.out.is_some() {
        Format::Csv
    } else {
        Format::Table
    });
    let mut file = match &args.out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|source| CliError::File {
                path: path.clone(),
                source,
            })?,
        )),
        None => None,
    };
    let sink: &mut dyn Write = match &mut file {
        Some(file) => file,
        None => out,
    };
    let path = format!("/uploads/{}/rejects", segment(&args.id));
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut rows = Rows::with_columns(
        format,
        ["line", "column", "reason"].map(String::from).to_vec(),
    );
    let mut after_line = 0;
    let mut rejected;
    loop {
        let page = producer
            .get(
                &path,
                &[
                    ("after_line", after_line.to_string()),
                    ("limit", REJECTS_PAGE.to_string()),
                ],
            )
            .await?;
        rejected = page["rejected"].as_u64().unwrap_or(0);
        let records: Vec<Record> = page["rejects"]
            .as_array()
            .map(|r| r.iter().map(Record::from).collect())
            .unwrap_or_default();
        if let Some(last) = records.last().and_then(|r| r.get("line")?.as_u64()) {
            after_line = last;
        }
        rows.push(sink, records)?;
        if page["next_after_line"].is_u64() {
            continue;
        }
        if rows.count >= rejected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(REJECTS_POLL).await;
    }
    let listed = rows.count;
    rows.finish(sink)?;
    sink.flush()?;
    if let Some(path) = &args.out {
        eprintln!("{listed} rejects written to {}", path.display());
    }
    if listed < rejected {
        return Err(CliError::Incomplete(format!(
            "{listed} of the upload's {rejected} rejects are stored so far; the consumer may \
             still be storing them: run this again in a moment"
        )));
    }
    Ok(Outcome::Done)
}
