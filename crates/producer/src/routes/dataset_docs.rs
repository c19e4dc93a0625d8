//! The OpenAPI operations of the catalog's dataset uploads, added to the document at start: one
//! per dataset the producer serves, at its literal path `/datasets/<dataset>/upload`, described
//! from its spec.
//!
//! Its description is the file the dataset's plan reads (`sluice_schema::dataset::plan`): the
//! formats an upload takes, then each column of the file — its type, whether it may be null and
//! which cells are, its timestamp format or check, and what a cell must be to be accepted. Its
//! parameters, body and answers are those of the generic `POST /datasets/{name}/upload` (but the
//! path's `name` and 404: the path names a dataset that exists). Its body's example is a file
//! of one record the plan accepts, so that a client generating requests from the document
//! (schemathesis in the tests, Swagger UI's "Try it out") has a valid upload to send.

use sluice_schema::dataset::plan::{EPOCH_MILLIS, EPOCH_SECONDS, EXPORT_FORMAT};
use sluice_schema::dataset::{Catalog, Check, Column, Dataset, Kind, Source, GAME_ROUNDS};
use sluice_schema::docs;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr};

/// The operation every dataset upload is also served by.
pub const GENERIC: &str = "/datasets/{name}/upload";

/// Adds an upload operation per dataset of `catalog` to `document`, which holds the generic
/// one.
pub fn add_operations(document: &mut OpenApi, catalog: &Catalog) {
    let generic = docs::generic_operation(document, GENERIC, HttpMethod::Post);
    for dataset in catalog.iter() {
        let path = format!("/datasets/{}/upload", dataset.spec.name);
        let operation = operation(&generic, dataset);
        document
            .paths
            .add_path_operation(path, vec![HttpMethod::Post], operation);
    }
}

/// `dataset`'s upload: the generic operation, its file described by the dataset's columns.
fn operation(generic: &Operation, dataset: &Dataset) -> Operation {
    let name = dataset.spec.name.as_str();
    let header = file_columns(dataset)
        .map(|column| code(&column.name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut operation = generic.clone();
    operation.operation_id = Some(format!("datasets.{name}.upload"));
    operation.summary = Some(format!("Uploads a file of `{name}`"));
    operation.description = Some(description(dataset));
    if let Some(parameters) = &mut operation.parameters {
        parameters.retain(|parameter| parameter.parameter_in != ParameterIn::Path);
    }
    if let Some(body) = &mut operation.request_body {
        body.description = Some(format!(
            "`multipart/form-data`, the file in the field `file`: CSV whose header names \
             {header}, or JSON, JSON Lines or Parquet with those columns."
        ));
        for content in body.content.values_mut() {
            content.example = Some(serde_json::json!({ "file": example(dataset) }));
        }
    }
    operation.responses = docs::instance_responses(generic);
    if let Some(RefOr::T(unusable)) = operation.responses.responses.get_mut("422") {
        unusable.description = format!(
            "The header cannot be used: empty, not text, a column named twice, or one of \
             {header} missing (every missing one is named)"
        );
    }
    operation
}

/// The operation's description: the dataset, what an upload does, the file and its columns.
fn description(dataset: &Dataset) -> String {
    let spec = &dataset.spec;
    let name = spec.name.as_str();
    let mut text = String::new();
    if let Some(doc) = &spec.doc {
        text.push_str(&format!("{}\n\n", doc.trim()));
    }
    text.push_str(&format!(
        "A file of the dataset `{name}` (`datasets/{name}.toml`), uploaded as \
         `POST /datasets/{{name}}/upload` says: in one Kafka transaction, with a receipt once \
         every accepted record is acknowledged; a re-send of the same content or \
         `Idempotency-Key` (within `{name}`) is answered with the first receipt."
    ));
    if name == GAME_ROUNDS {
        text.push_str(" The same upload as `POST /csv_upload`.");
    }
    let identity = (spec.identity.iter().map(|c| code(c)))
        .collect::<Vec<_>>()
        .join(", ");
    text.push_str(&format!(
        "\n\nThe file is CSV, a JSON array of objects, JSON Lines (an object per line) or \
         Parquet, told by its first bytes (a file name or media type that names another format \
         is refused with 415); text in UTF-8 (with or without a byte-order mark) or in UTF-16 \
         LE or BE with a byte-order mark; plain or compressed with gzip or zstd (recognised by \
         its first bytes). A CSV file's first row is the header: it names every column below, \
         in any order and case (white space around a name is ignored); JSON keys and Parquet \
         columns are the same names. Other columns are ignored and listed on the receipt \
         (`unknown_columns`). Each row is one record, identified by {identity}: a later \
         version of a record replaces the earlier one. A row with a cell its \
         column does not take, or with another number of cells than the header, is rejected (counted, and listed by line, column and reason on the \
         receipt and at `GET /uploads/{{id}}/rejects`); the other rows are accepted.\n\n\
         | Column | Type | Null | A cell | About |\n\
         | --- | --- | --- | --- | --- |\n"
    ));
    for column in file_columns(dataset) {
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            code(&column.name),
            kind(column),
            null(column),
            cell(column),
            column.doc.as_deref().map(table_text).unwrap_or_default(),
        ));
    }
    let from_upload: Vec<String> = (spec.columns.iter())
        .filter(|column| column.source == Source::Upload)
        .map(|column| code(&column.name))
        .collect();
    if !from_upload.is_empty() {
        text.push_str(&format!(
            "\n{} {} not read from the file: each record carries the upload's id (the \
             receipt's `upload_id`).",
            from_upload.join(", "),
            if from_upload.len() == 1 { "is" } else { "are" },
        ));
    }
    text
}

/// The columns read from a file, in the spec's order.
fn file_columns(dataset: &Dataset) -> impl Iterator<Item = &Column> {
    (dataset.spec.columns.iter()).filter(|column| column.source == Source::File)
}

/// The column's type as its spec declares it, with its scale, format or check.
fn kind(column: &Column) -> String {
    let kind = code(column.kind.name());
    match (column.kind, column.scale, &column.format, column.check) {
        (Kind::Decimal, Some(scale), _, _) => format!("{kind}, scale {scale}"),
        (Kind::Timestamp, _, Some(format), _) => format!("{kind}, format {}", code(format)),
        (_, _, _, Some(Check::Hex32)) => format!("{kind}, check `hex32`"),
        (_, _, _, Some(Check::Alpha3)) => format!("{kind}, check `alpha3`"),
        _ => kind,
    }
}

/// Which cells are null (`Plan`: a nullable column's cell equal to one of its null tokens,
/// trimmed, in any case).
fn null(column: &Column) -> String {
    match (column.nullable, column.null_tokens.as_slice()) {
        (false, _) => "no".to_owned(),
        (true, []) => "nullable, but no cell is read as null (no `null_tokens`)".to_owned(),
        (true, tokens) => {
            let tokens: Vec<String> = tokens
                .iter()
                .map(|token| match token.as_str() {
                    "" => "an empty cell".to_owned(),
                    token => code(token),
                })
                .collect();
            format!(
                "yes: {} (white space around it ignored, any case)",
                tokens.join(" or ")
            )
        }
    }
}

/// What a cell must be to be accepted, in words: what the plan reads (`Plan`'s `Op`s).
fn cell(column: &Column) -> String {
    let trimmed = "white space around it is ignored";
    match (column.kind, column.check) {
        (Kind::String, Some(Check::Hex32)) => {
            format!("32 hexadecimal characters, either case ({trimmed}); stored in lower case")
        }
        (Kind::String, Some(Check::Alpha3)) => {
            format!("3 ASCII letters, either case ({trimmed}); stored in upper case")
        }
        (Kind::String, None) => "Any text without a NUL character, kept as it is".to_owned(),
        (Kind::Int64, _) => format!(
            "An integer from -9223372036854775808 to 9223372036854775807, in decimal digits \
             with an optional sign ({trimmed})"
        ),
        (Kind::Uint64, _) => {
            format!("An integer from 0 to 9223372036854775807, in decimal digits ({trimmed})")
        }
        (Kind::Float32 | Kind::Float64, _) => format!(
            "A finite number such as `4.5` or `-1.5e3`, read as a {}-bit float ({trimmed})",
            if column.kind == Kind::Float32 { 32 } else { 64 }
        ),
        (Kind::Decimal, _) => {
            let scale = column.scale.unwrap_or(0);
            format!(
                "A decimal number with an optional sign and at most {scale} digit{s} after the \
                 point, such as `{example}`, kept exactly ({trimmed})",
                s = if scale == 1 { "" } else { "s" },
                example = decimal(scale),
            )
        }
        (Kind::Timestamp, _) => {
            let when = match column.format.as_deref() {
                Some(EPOCH_MILLIS) => {
                    format!("Milliseconds since the Unix epoch, an integer ({trimmed})")
                }
                Some(EPOCH_SECONDS) => {
                    format!("Seconds since the Unix epoch, an integer ({trimmed})")
                }
                None | Some(EXPORT_FORMAT) => format!(
                    "A UTC time such as `2019-10-22 08:20:42`, also with fractions of a second, \
                     a `T` for the space, or RFC 3339 with an offset ({trimmed})"
                ),
                Some(format) => format!(
                    "A UTC time in the `chrono` format {} (a format without a time reads as \
                     midnight; {trimmed})",
                    code(format)
                ),
            };
            format!("{when}; from 1970-01-01 00:00:00 to 2105-12-31 23:59:59 UTC")
        }
    }
}

/// A decimal with `scale` digits after the point (at most 4): `-12.5555`.
fn decimal(scale: u32) -> String {
    match scale {
        0 => "-12".to_owned(),
        scale => format!("-12.{}", "5".repeat(scale.min(4) as usize)),
    }
}

/// A CSV file of one record of `dataset`: its header, then a value every file column takes.
fn example(dataset: &Dataset) -> String {
    let (names, values): (Vec<String>, Vec<String>) = file_columns(dataset)
        .map(|column| (csv_cell(&column.name), csv_cell(&value(column))))
        .unzip();
    format!("{}\n{}\n", names.join(","), values.join(","))
}

/// A cell `column` takes (not a null token), its moment 2024-01-31 12:00:00 UTC.
fn value(column: &Column) -> String {
    const MOMENT_S: i64 = 1_706_702_400;
    match (column.kind, column.check) {
        (Kind::String, Some(Check::Hex32)) => "9ece8c4020f8aed10676cd1c56a41889".to_owned(),
        (Kind::String, Some(Check::Alpha3)) => "USA".to_owned(),
        (Kind::String, None) => format!("a {}", column.name),
        (Kind::Int64, _) => "-5".to_owned(),
        (Kind::Uint64, _) => "7".to_owned(),
        (Kind::Float32 | Kind::Float64, _) => "4.5".to_owned(),
        (Kind::Decimal, _) => decimal(column.scale.unwrap_or(0)),
        (Kind::Timestamp, _) => match column.format.as_deref() {
            Some(EPOCH_MILLIS) => format!("{MOMENT_S}000"),
            Some(EPOCH_SECONDS) => MOMENT_S.to_string(),
            None | Some(EXPORT_FORMAT) => "2024-01-31 12:00:00".to_owned(),
            Some(format) => chrono::DateTime::from_timestamp(MOMENT_S, 0)
                .expect("a valid moment")
                .naive_utc()
                .format(format)
                .to_string(),
        },
    }
}

/// `text` as a CSV cell: quoted when it holds a comma, a quote or a line break.
fn csv_cell(text: &str) -> String {
    match text.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")),
        false => text.to_owned(),
    }
}

/// `text` as inline code in a Markdown table cell.
fn code(text: &str) -> String {
    let text = table_text(text);
    match text.contains('`') {
        true => format!("`` {text} ``"),
        false => format!("`{text}`"),
    }
}

/// `text` on one line, its `|` escaped: the content of a Markdown table cell.
fn table_text(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    /// The document serving `catalog`, as `GET /openapi.json` answers it.
    fn document(catalog: &Catalog) -> Value {
        let document = super::super::docs::openapi(catalog);
        let json = docs::OpenApiJson::of(&document);
        serde_json::from_str(json.as_str()).unwrap()
    }

    fn shipped() -> Catalog {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        Catalog::read(&dir).unwrap()
    }

    /// The paths under `/datasets/`.
    fn dataset_paths(document: &Value) -> Vec<&str> {
        let paths = document["paths"].as_object().unwrap().keys();
        paths
            .map(String::as_str)
            .filter(|path| path.starts_with("/datasets/"))
            .collect()
    }

    /// The table rows of an operation's description, by column: its cells.
    fn table(operation: &Value) -> Vec<Vec<String>> {
        let description = operation["description"].as_str().unwrap();
        let rows = description
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                // Split on the `|` that are not escaped.
                let cells = line.replace("\\|", "\u{1}");
                let cells: Vec<String> = cells
                    .split('|')
                    .map(|cell| cell.trim().replace('\u{1}', "\\|"))
                    .collect();
                assert_eq!(cells.len(), 7, "five cells: {line}");
                cells[1..6].to_vec()
            });
        rows.collect()
    }

    fn row<'a>(table: &'a [Vec<String>], column: &str) -> &'a [String] {
        let name = format!("`{column}`");
        table.iter().find(|row| row[0] == name).unwrap()
    }

    #[test]
    fn every_shipped_dataset_has_its_upload_described_by_its_columns() {
        let catalog = shipped();
        let document = document(&catalog);
        let paths = &document["paths"];
        assert_eq!(
            dataset_paths(&document),
            [
                "/datasets/amazon_reviews/upload",
                "/datasets/events/upload",
                "/datasets/game_rounds/upload",
                "/datasets/records/upload",
                GENERIC,
            ]
        );
        let generic = &paths[GENERIC]["post"];
        for dataset in catalog.iter() {
            let name = &dataset.spec.name;
            let path = format!("/datasets/{name}/upload");
            let upload = &paths[&path]["post"];
            assert_eq!(upload["operationId"], format!("datasets.{name}.upload"));
            assert_eq!(upload["tags"], generic["tags"], "{path}");
            assert_eq!(upload["security"], json!([{"upload_token": []}]));
            assert_eq!(
                upload["parameters"],
                json!([generic["parameters"][1]]),
                "{path}: its Idempotency-Key, not the path's name"
            );
            assert_eq!(upload["parameters"][0]["name"], "Idempotency-Key");
            let body = &upload["requestBody"];
            let form = &body["content"]["multipart/form-data"];
            assert_eq!(
                form["schema"],
                generic["requestBody"]["content"]["multipart/form-data"]["schema"]
            );
            assert_eq!(form["example"]["file"], example(dataset), "{path}");
            let mut expected = generic["responses"].clone();
            expected.as_object_mut().unwrap().remove("404");
            let mut responses = upload["responses"].clone();
            let header = responses["422"]["description"].take();
            expected["422"]["description"] = Value::Null;
            assert_eq!(responses, expected, "{path}: the generic answers but 404");
            // The file's columns, in the spec's order, in the table, the body and the 422.
            let columns: Vec<String> = (dataset.spec.columns.iter())
                .filter(|c| c.source == Source::File)
                .map(|c| format!("`{}`", c.name))
                .collect();
            let table = table(upload);
            let names: Vec<&String> = table.iter().map(|row| &row[0]).collect();
            assert_eq!(names, columns.iter().collect::<Vec<_>>(), "{path}");
            for column in &dataset.spec.columns {
                if column.source == Source::File {
                    let row = row(&table, &column.name);
                    assert!(row[1].starts_with(&format!("`{}`", column.kind.name())));
                    assert_eq!(row[2] == "no", !column.nullable, "{path} {}", column.name);
                }
            }
            let header_names = columns.join(", ");
            assert!(body["description"].as_str().unwrap().ends_with(&format!(
                "header names {header_names}, or JSON, JSON Lines or Parquet with those columns."
            )));
            assert!(header.as_str().unwrap().contains(&header_names), "{header}");
        }

        let events = table(&paths["/datasets/events/upload"]["post"]);
        assert_eq!(
            row(&events, "value"),
            [
                "`value`",
                "`decimal`, scale 4",
                "yes: an empty cell (white space around it ignored, any case)",
                "A decimal number with an optional sign and at most 4 digits after the point, \
                 such as `-12.5555`, kept exactly (white space around it is ignored)",
                "Scaled by 10^4; empty when the event has no value.",
            ]
        );
        assert_eq!(
            row(&events, "occurred_at")[1],
            "`timestamp`, format `%Y-%m-%d %H:%M:%S`"
        );
        assert!(row(&events, "occurred_at")[3].starts_with("A UTC time such as"));
        assert_eq!(
            row(&events, "event_type")[3],
            "Any text without a NUL character, kept as it is"
        );
        let reviews = &paths["/datasets/amazon_reviews/upload"]["post"];
        let description = reviews["description"].as_str().unwrap();
        assert!(description.starts_with("One product review.\n\nA file of the dataset"));
        assert!(description.contains("identified by `asin`, `timestamp`, `user_id`"));
        assert!(description.ends_with(
            "\n`upload_id` is not read from the file: each record carries the upload's id (the \
             receipt's `upload_id`)."
        ));
        let reviews = table(reviews);
        assert_eq!(row(&reviews, "rating")[1], "`float32`");
        assert!(row(&reviews, "rating")[3].contains("32-bit float"));
        assert_eq!(
            row(&reviews, "timestamp")[1],
            "`timestamp`, format `epoch_ms`"
        );
        assert!(row(&reviews, "timestamp")[3].starts_with("Milliseconds since the Unix epoch"));
        let records = table(&paths["/datasets/records/upload"]["post"]);
        assert_eq!(row(&records, "country")[1], "`string`, check `alpha3`");
        assert!(row(&records, "country")[3].starts_with("3 ASCII letters"));
        assert!(row(&records, "id")[3].starts_with("An integer from 0 to"));
        let rounds = &paths["/datasets/game_rounds/upload"]["post"];
        assert!(rounds["description"]
            .as_str()
            .unwrap()
            .contains("The same upload as `POST /csv_upload`."));
    }

    /// Each shipped dataset's example is a file of one record its plan accepts whole.
    #[tokio::test]
    async fn each_example_is_accepted() {
        use crate::ingest::{ingest_body, DiscardSink, IngestOptions, Limits, TextFormat};

        let limits = Limits {
            max_upload_bytes: u64::MAX,
            max_in_flight: 10,
            max_rejects_listed: 10,
            max_line_bytes: 1 << 20,
            max_record_bytes: 1 << 20,
            max_unknown_columns_listed: 10,
            body_idle_timeout: std::time::Duration::from_secs(5),
        };
        for dataset in shipped().iter() {
            let file = bytes::Bytes::from(example(dataset));
            let body = futures::stream::iter([Ok::<_, std::io::Error>(file)]);
            let options = IngestOptions::new(TextFormat::Csv, dataset.plan.clone(), limits);
            let receipt = ingest_body(body, DiscardSink, options).await.unwrap();
            let name = &dataset.spec.name;
            assert_eq!(
                (receipt.accepted, receipt.rejected),
                (1, 0),
                "{name}: {receipt:?}"
            );
            assert!(receipt.unknown_columns.is_empty(), "{name}");
        }
        let mut column = dataset_column("%d/%m/%Y, %H.%M");
        column.kind = Kind::Timestamp;
        assert_eq!(value(&column), "31/01/2024, 12.00");
        assert_eq!(csv_cell(&value(&column)), "\"31/01/2024, 12.00\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    fn dataset_column(format: &str) -> Column {
        Column {
            name: "n".to_owned(),
            kind: Kind::String,
            scale: None,
            format: Some(format.to_owned()),
            check: None,
            nullable: false,
            null_tokens: Vec::new(),
            source: Source::File,
            default: None,
            doc: None,
        }
    }

    #[test]
    fn without_a_directory_only_game_rounds() {
        let document = document(&Catalog::builtin());
        assert_eq!(
            dataset_paths(&document),
            ["/datasets/game_rounds/upload", GENERIC]
        );
    }

    #[test]
    fn table_cells_hold_any_text() {
        assert_eq!(code("a|b"), r"`a\|b`");
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(table_text(" one\ntwo  | three "), r"one two \| three");
        let column = Column {
            name: "n".to_owned(),
            kind: Kind::String,
            scale: None,
            format: None,
            check: None,
            nullable: true,
            null_tokens: vec![String::new(), "n/a".to_owned(), "a|b".to_owned()],
            source: Source::File,
            default: None,
            doc: None,
        };
        assert_eq!(
            null(&column),
            r"yes: an empty cell or `n/a` or `a\|b` (white space around it ignored, any case)"
        );
    }
}
