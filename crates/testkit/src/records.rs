//! Deterministic rows of any dataset, from its spec: a file of `rows` records (CSV with a header,
//! JSON Lines, or Parquet with typed columns) that the dataset's plan accepts whole, for tests and `cargo xtask gen
//! --dataset`. The identity's integer columns count up from 1, so every record is its own;
//! text holds quotes, commas and (one in seven) a line break, nullable cells are sometimes
//! empty, timestamps follow the column's format.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_schema::dataset::plan::{EPOCH_MILLIS, EPOCH_SECONDS};
use sluice_schema::dataset::{Check, Column, Kind, Source, Spec};

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
    /// One row group; integers as INT64, floats as FLOAT/DOUBLE, decimals as DECIMAL(18, S),
    /// timestamps as TIMESTAMP_MILLIS, text as UTF8; nullable columns OPTIONAL.
    Parquet,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::JsonLines),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

const WORDS: [&str; 12] = [
    "great",
    "value",
    "broke",
    "after",
    "a week",
    "\"five stars\"",
    "would",
    "buy again",
    "meh,",
    "ok",
    "fast",
    "shipping",
];
const COUNTRIES: [&str; 6] = ["USA", "GBR", "DEU", "FRA", "JPN", "BRA"];
/// 2024-01-01 00:00:00 UTC.
const START: i64 = 1_704_067_200;

/// `rows` records of `spec` in `format`, the same for the same `seed`.
pub fn file(spec: &Spec, rows: u64, seed: u64, format: Format) -> Vec<u8> {
    let mut random = StdRng::seed_from_u64(seed);
    let columns: Vec<&Column> = spec
        .columns
        .iter()
        .filter(|c| c.source == Source::File)
        .collect();
    if format == Format::Parquet {
        let cells = (1..=rows).map(|row| {
            let cells = columns.iter().map(|c| cell(spec, c, row, &mut random));
            cells.collect::<Vec<_>>()
        });
        return parquet_file(&columns, &cells.collect::<Vec<_>>());
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut jsonl = Vec::new();
    if format == Format::Csv {
        csv.write_record(columns.iter().map(|c| c.name.as_str()))
            .expect("writing to memory");
    }
    for row in 1..=rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| cell(spec, c, row, &mut random))
            .collect();
        match format {
            Format::Csv | Format::Parquet => csv.write_record(&cells).expect("writing to memory"),
            Format::JsonLines => {
                let object: serde_json::Map<String, serde_json::Value> = columns
                    .iter()
                    .zip(cells)
                    .map(|(c, cell)| (c.name.clone(), serde_json::Value::String(cell)))
                    .collect();
                serde_json::to_writer(&mut jsonl, &object).expect("writing to memory");
                jsonl.push(b'\n');
            }
        }
    }
    match format {
        Format::JsonLines => jsonl,
        _ => csv.into_inner().expect("writing to memory"),
    }
}

/// `rows` (each a cell per column, as text; a null token is null) as a Parquet file of
/// `columns` in their types.
fn parquet_file(columns: &[&Column], rows: &[Vec<String>]) -> Vec<u8> {
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let fields: Vec<String> = columns.iter().map(|c| parquet_field(c)).collect();
    let message = format!("message records {{ {} }}", fields.join(" "));
    let schema = Arc::new(parse_message_type(&message).expect("a valid Parquet schema"));
    let mut out = Vec::new();
    let properties = Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(&mut out, schema, properties).expect("in memory");
    let mut group = writer.next_row_group().expect("in memory");
    let mut index = 0;
    while let Some(mut writer) = group.next_column().expect("in memory") {
        let column = columns[index];
        let cells: Vec<Option<&str>> = rows
            .iter()
            .map(|row| Some(row[index].as_str()).filter(|c| !is_null(column, c)))
            .collect();
        let levels: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
        let levels = column.nullable.then_some(levels.as_slice());
        write_parquet_column(&mut writer, column, &cells, levels);
        writer.close().expect("in memory");
        index += 1;
    }
    group.close().expect("in memory");
    writer.close().expect("in memory");
    out
}

/// Whether `cell` stands for no value in `column`.
fn is_null(column: &Column, cell: &str) -> bool {
    column.nullable && column.null_tokens.iter().any(|token| token == cell)
}

/// The Parquet schema field of `column`.
fn parquet_field(column: &Column) -> String {
    let repetition = if column.nullable {
        "OPTIONAL"
    } else {
        "REQUIRED"
    };
    let kind = match column.kind {
        Kind::String => "BYTE_ARRAY {} (UTF8)".to_owned(),
        Kind::Int64 | Kind::Uint64 => "INT64 {}".to_owned(),
        Kind::Float32 => "FLOAT {}".to_owned(),
        Kind::Float64 => "DOUBLE {}".to_owned(),
        Kind::Decimal => format!("INT64 {{}} (DECIMAL(18, {}))", column.scale.unwrap_or(0)),
        Kind::Timestamp => "INT64 {} (TIMESTAMP_MILLIS)".to_owned(),
    };
    format!("{repetition} {};", kind.replace("{}", &column.name))
}

/// Writes the non-null `cells` of `column` (text as [`cell`] makes it) in its Parquet type.
fn write_parquet_column(
    writer: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    column: &Column,
    cells: &[Option<&str>],
    levels: Option<&[i16]>,
) {
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int64Type};
    let values = cells.iter().flatten();
    let written = match column.kind {
        Kind::String => {
            let values: Vec<ByteArray> = values.map(|v| ByteArray::from(*v)).collect();
            writer
                .typed::<ByteArrayType>()
                .write_batch(&values, levels, None)
        }
        Kind::Float32 => {
            let values: Vec<f32> = values.map(|v| v.parse().expect("a float")).collect();
            writer
                .typed::<FloatType>()
                .write_batch(&values, levels, None)
        }
        Kind::Float64 => {
            let values: Vec<f64> = values.map(|v| v.parse().expect("a float")).collect();
            writer
                .typed::<DoubleType>()
                .write_batch(&values, levels, None)
        }
        Kind::Int64 | Kind::Uint64 | Kind::Decimal | Kind::Timestamp => {
            let values: Vec<i64> = values.map(|v| integer(column, v)).collect();
            writer
                .typed::<Int64Type>()
                .write_batch(&values, levels, None)
        }
    };
    written.expect("in memory");
}

/// An integer, decimal (unscaled) or timestamp (milliseconds) cell as Parquet stores it.
fn integer(column: &Column, text: &str) -> i64 {
    match column.kind {
        Kind::Decimal => text.replace('.', "").parse().expect("a decimal"),
        Kind::Timestamp => {
            let seconds = match column.format.as_deref() {
                Some(EPOCH_MILLIS) => return text.parse().expect("milliseconds"),
                Some(EPOCH_SECONDS) => text.parse().expect("seconds"),
                format => {
                    let format = format.unwrap_or("%Y-%m-%d %H:%M:%S");
                    let moment = chrono::NaiveDateTime::parse_from_str(text, format);
                    moment.expect("a time as written").and_utc().timestamp()
                }
            };
            seconds * 1000
        }
        _ => text.parse().expect("an integer"),
    }
}

/// The cell of `column` in record number `row`.
fn cell(spec: &Spec, column: &Column, row: u64, random: &mut StdRng) -> String {
    if column.nullable && random.random_range(0..20) == 0 {
        return column.null_tokens.first().cloned().unwrap_or_default();
    }
    let identity = spec.identity.contains(&column.name);
    match column.kind {
        Kind::Int64 | Kind::Uint64 if identity => row.to_string(),
        Kind::Int64 => random.random_range(-1_000_i64..1_000).to_string(),
        Kind::Uint64 => random.random_range(0_u64..1_000).to_string(),
        Kind::Float32 | Kind::Float64 => {
            format!("{:.1}", random.random_range(10..=50) as f64 / 10.0)
        }
        Kind::Decimal => decimal(column.scale.unwrap_or(0), random),
        Kind::Timestamp => timestamp(column, START + row as i64 * 37 % 31_536_000),
        Kind::String => text(column, row, identity, random),
    }
}

fn decimal(scale: u32, random: &mut StdRng) -> String {
    let units = random.random_range(0_i64..1_000_000);
    if scale == 0 {
        return units.to_string();
    }
    let factor = 10_i64.pow(scale);
    format!(
        "{}.{:0width$}",
        units / factor,
        units % factor,
        width = scale as usize
    )
}

fn timestamp(column: &Column, seconds: i64) -> String {
    match column.format.as_deref() {
        Some(EPOCH_MILLIS) => (seconds * 1000).to_string(),
        Some(EPOCH_SECONDS) => seconds.to_string(),
        format => {
            let moment = chrono::DateTime::from_timestamp(seconds, 0).expect("in range");
            moment
                .format(format.unwrap_or("%Y-%m-%d %H:%M:%S"))
                .to_string()
        }
    }
}

fn text(column: &Column, row: u64, identity: bool, random: &mut StdRng) -> String {
    match column.check {
        Some(Check::Hex32) => format!("{:032x}", random.random::<u128>()),
        Some(Check::Alpha3) => COUNTRIES[random.random_range(0..COUNTRIES.len())].to_owned(),
        None if identity => format!("{}-{row}", column.name),
        None => {
            let words = random.random_range(1..8);
            let mut text: Vec<&str> = (0..words)
                .map(|_| WORDS[random.random_range(0..WORDS.len())])
                .collect();
            if row.is_multiple_of(7) {
                text.push("\nsecond line");
            }
            text.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_schema::csv::RowBytes;
    use sluice_schema::dataset::plan::{Plan, Record};

    use super::*;

    fn shipped(name: &str) -> Spec {
        let path = crate::stack::workspace_root().join(format!("datasets/{name}.toml"));
        Spec::read(&path).unwrap()
    }

    #[tokio::test]
    async fn every_shipped_datasets_generated_rows_are_accepted_whole_in_every_format() {
        for name in ["amazon_reviews", "events", "records", "game_rounds"] {
            let spec = shipped(name);
            let plan = Plan::compile(&spec);
            let mut record = Record::new();
            let csv = file(&spec, 300, 5, Format::Csv);
            let mut reader = csv_async::AsyncReaderBuilder::new().create_reader(&csv[..]);
            let bound = plan.bind_csv(reader.byte_headers().await.unwrap()).unwrap();
            let mut row = csv_async::ByteRecord::new();
            let mut rows = 0;
            while reader.read_byte_record(&mut row).await.unwrap() {
                rows += 1;
                let encoded =
                    bound.encode_csv(&plan, &row, rows + 1, "u", RowBytes::Unchecked, &mut record);
                encoded.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            assert_eq!(rows, 300, "{name}: one record per row, line breaks and all");
            let jsonl = file(&spec, 300, 5, Format::JsonLines);
            let text = String::from_utf8(jsonl).unwrap();
            for (line, json) in (1..).zip(text.lines()) {
                plan.encode_json(json, line, "u", &mut record)
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            assert_eq!(text.lines().count(), 300);
            let parquet = bytes::Bytes::from(file(&spec, 300, 5, Format::Parquet));
            let reader = parquet::file::serialized_reader::SerializedFileReader::new(parquet);
            let reader = reader.unwrap_or_else(|e| panic!("{name}: {e}"));
            let schema = parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .schema_descr_ptr();
            let bound = plan.bind_parquet(&schema).unwrap();
            let rows = parquet::file::reader::FileReader::get_row_iter(&reader, None).unwrap();
            let mut count = 0;
            for (line, row) in (1..).zip(rows) {
                let row = row.unwrap();
                bound
                    .encode_parquet(&plan, &row, line, "u", &mut record)
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                count += 1;
            }
            assert_eq!(count, 300, "{name}: every Parquet row");
        }
        assert_eq!(
            file(&shipped("records"), 50, 9, Format::Csv),
            file(&shipped("records"), 50, 9, Format::Csv)
        );
    }
}
