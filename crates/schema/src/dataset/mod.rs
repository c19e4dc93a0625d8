//! Datasets declared in files (`datasets/<name>.toml`, issue 14): a dataset's columns, identity,
//! Kafka key and time column, parsed into a [`Spec`] and checked at once, so that a mistake is
//! an error naming the file, the field and the fix rather than a failure at run time.
//!
//! Every service works from specs: the producer and the watcher encode rows by a spec's
//! [`plan`], the consumer converts its records to rows by its [`rowbinary`] converter, the
//! rollups and the gateway's endpoints follow its endpoints. `game_rounds` is the first spec,
//! built in: its Avro schema ([`avro`]) is `schemas/game_round.avsc` byte for byte, its versions
//! table ([`clickhouse`]) migration 6.
//!
//! A spec evolves only by appending nullable or defaulted columns; its earlier versions are
//! recorded in `datasets/history/` and their records still read ([`history`]), and so are
//! files written for them ([`plan::Plan::compile_since`]).

pub mod avro;
pub mod clickhouse;
pub mod endpoint;
pub mod history;
pub mod json;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod plan;
pub mod rowbinary;

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

/// A dataset as its file declares it, checked ([`Spec::parse`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The dataset's name: its topic, tables and routes are named after it.
    pub name: String,
    /// What one record is, for people (the Avro record's `doc`).
    #[serde(default)]
    pub doc: Option<String>,
    /// The columns that make a record's identity: records with the same values are versions of
    /// one record, and the latest wins.
    pub identity: Vec<String>,
    /// The column whose value keys the Kafka messages (a record's versions stay in order).
    pub kafka_key: String,
    /// The timestamp column the data is bucketed and partitioned by.
    pub time: String,
    /// The Avro record's name and namespace.
    pub avro: AvroName,
    /// The table of every record version; default `<name>_versions`.
    #[serde(default)]
    pub versions_table: Option<String>,
    pub columns: Vec<Column>,
    /// What the gateway serves of it (`GET /datasets/{name}/{endpoint}`).
    #[serde(default)]
    pub endpoints: Vec<endpoint::Endpoint>,
}

/// The Avro record's full name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvroName {
    pub name: String,
    pub namespace: String,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Decimals: digits after the point (carried as integers scaled by `10^scale`).
    #[serde(default)]
    pub scale: Option<u32>,
    /// Timestamps: how the input writes them: `epoch_ms`, `epoch_s` or a `chrono` format (UTC);
    /// `%Y-%m-%d %H:%M:%S` also reads fractions of a second, a `T` and RFC 3339.
    #[serde(default)]
    pub format: Option<String>,
    /// Strings: a named check every value must pass (and the form it is stored in).
    #[serde(default)]
    pub check: Option<Check>,
    /// Whether a value may be missing.
    #[serde(default)]
    pub nullable: bool,
    /// Nullable columns: the cells that mean "no value".
    #[serde(default)]
    pub null_tokens: Vec<String>,
    /// Where the value comes from.
    #[serde(default)]
    pub source: Source,
    /// The value records written before this column existed read as (the Avro field's
    /// default): written as one of the column's cells is (`"0.00"`, a time in its `format`; a
    /// TOML number is taken as its text), and checked like one. Not on a nullable column,
    /// whose default is null.
    #[serde(default, deserialize_with = "literal")]
    pub default: Option<String>,
    #[serde(default)]
    pub doc: Option<String>,
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    String,
    Int64,
    Uint64,
    Float32,
    Float64,
    Decimal,
    Timestamp,
}

impl Kind {
    /// The name a spec writes it with.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Int64 => "int64",
            Kind::Uint64 => "uint64",
            Kind::Float32 => "float32",
            Kind::Float64 => "float64",
            Kind::Decimal => "decimal",
            Kind::Timestamp => "timestamp",
        }
    }
}

/// A named check of a string column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// 32 hexadecimal characters, trimmed, stored in lower case.
    Hex32,
    /// 3 ASCII letters (an ISO 3166 alpha-3 country code), trimmed, stored in upper case.
    Alpha3,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A column of the file.
    #[default]
    File,
    /// The upload the record arrived in (its receipt's `upload_id`).
    Upload,
}

/// The largest decimal scale: a value scaled by `10^18` still fits 64 bits for small numbers
/// only, so larger scales are refused.
pub const MAX_SCALE: u32 = 18;

/// Why a spec was refused: the file, the field and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{file}: {source}")]
    Syntax {
        file: String,
        source: Box<toml::de::Error>,
    },
    #[error("{file}: `{field}`: {problem}; {fix}")]
    Invalid {
        file: String,
        field: String,
        problem: String,
        fix: String,
    },
}

impl Spec {
    /// Reads and checks the spec in `path`.
    pub fn read(path: &Path) -> Result<Spec, SpecError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Invalid {
            file: file.clone(),
            field: "(file)".into(),
            problem: e.to_string(),
            fix: "give the path of a readable `datasets/<name>.toml`".into(),
        })?;
        Spec::parse(&file, &text)
    }

    /// Parses and checks the spec `text`, read from `file` (named in errors).
    pub fn parse(file: &str, text: &str) -> Result<Spec, SpecError> {
        let spec: Spec = toml::from_str(text).map_err(|source| SpecError::Syntax {
            file: file.to_owned(),
            source: Box::new(source),
        })?;
        spec.check()
            .map_err(|(field, problem, fix)| SpecError::Invalid {
                file: file.to_owned(),
                field,
                problem,
                fix,
            })?;
        Ok(spec)
    }

    /// The table of every record version.
    pub fn versions_table(&self) -> String {
        self.versions_table
            .clone()
            .unwrap_or_else(|| format!("{}_versions", self.name))
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The first problem, as (field, problem, fix).
    fn check(&self) -> Result<(), (String, String, String)> {
        identifier("name", &self.name)?;
        identifier("versions_table", &self.versions_table())?;
        if self.columns.is_empty() {
            return Err(problem(
                "columns",
                "no column",
                "declare at least one [[columns]]",
            ));
        }
        let mut seen = HashSet::new();
        for (i, column) in self.columns.iter().enumerate() {
            let field = format!("columns[{i}]");
            identifier(&format!("{field}.name"), &column.name)?;
            if !seen.insert(column.name.as_str()) {
                let fix = "give each column its own name";
                return Err(problem(&field, &format!("`{}` twice", column.name), fix));
            }
            column.check(&field)?;
        }
        if self.identity.is_empty() {
            let fix = "name the columns that identify a record, e.g. `identity = [\"id\"]`";
            return Err(problem("identity", "empty", fix));
        }
        for name in &self.identity {
            self.required("identity", name)?;
        }
        self.required("kafka_key", &self.kafka_key)?;
        let time = self.required("time", &self.time)?;
        if time.kind != Kind::Timestamp {
            let fix = "name a column of type \"timestamp\"";
            return Err(problem(
                "time",
                &format!("`{}` is not a timestamp", self.time),
                fix,
            ));
        }
        let mut names = HashSet::new();
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if !names.insert(endpoint.name.as_str()) {
                let fix = "give each endpoint a name of its own";
                let field = format!("endpoints[{index}]");
                return Err(problem(&field, &format!("`{}` twice", endpoint.name), fix));
            }
            endpoint.check(self, index)?;
        }
        Ok(())
    }

    /// The column `name`, which `field` refers to: it must exist and never be missing.
    fn required(&self, field: &str, name: &str) -> Result<&Column, (String, String, String)> {
        let Some(column) = self.column(name) else {
            let fix = "name one of the [[columns]]";
            return Err(problem(field, &format!("no column `{name}`"), fix));
        };
        if column.nullable || column.source != Source::File {
            let fix = "name a column of the file that is not nullable";
            return Err(problem(field, &format!("`{name}` may be missing"), fix));
        }
        Ok(column)
    }
}

impl Column {
    fn check(&self, field: &str) -> Result<(), (String, String, String)> {
        let misplaced = |what: &str, kind: &str| {
            let fix = format!("remove `{what}`, or make the column a {kind}");
            Err(problem(
                field,
                &format!("`{what}` is only for {kind}s"),
                &fix,
            ))
        };
        match (self.kind, self.scale) {
            (Kind::Decimal, None) => {
                let fix = "add `scale = N` (digits after the point)";
                return Err(problem(field, "a decimal without a scale", fix));
            }
            (Kind::Decimal, Some(scale)) if scale > MAX_SCALE => {
                let fix = format!("use a scale of at most {MAX_SCALE}");
                return Err(problem(field, &format!("scale {scale}"), &fix));
            }
            (Kind::Decimal, Some(_)) | (_, None) => {}
            (_, Some(_)) => return misplaced("scale", "decimal"),
        }
        match (self.kind, &self.format) {
            (Kind::Timestamp, None) if self.source == Source::File => {
                let fix = "add `format = \"%Y-%m-%d %H:%M:%S\"` (or the input's own)";
                return Err(problem(field, "a timestamp without its input format", fix));
            }
            (Kind::Timestamp, Some(format)) if !plan::valid_time_format(format) => {
                let fix =
                    "use `epoch_ms`, `epoch_s` or a chrono format such as \"%Y-%m-%d %H:%M:%S\"";
                return Err(problem(
                    field,
                    &format!("`{format}` is not a timestamp format"),
                    fix,
                ));
            }
            (Kind::Timestamp, _) | (_, None) => {}
            (_, Some(_)) => return misplaced("format", "timestamp"),
        }
        if self.check.is_some() && self.kind != Kind::String {
            return misplaced("check", "string");
        }
        if !self.nullable && !self.null_tokens.is_empty() {
            let fix = "set `nullable = true`, or remove `null_tokens`";
            return Err(problem(
                field,
                "null tokens on a column that cannot be null",
                fix,
            ));
        }
        if self.default.is_some() && self.nullable {
            let fix = "remove `default` (a nullable column's default is null), or `nullable`";
            return Err(problem(field, "a default on a nullable column", fix));
        }
        if let Err(reason) = plan::default_datum(self) {
            let fix = "give a value of the column's type, written as its cells are";
            let field = format!("{field}.default");
            return Err(problem(&field, &reason, fix));
        }
        Ok(())
    }
}

/// A `default` as text: a TOML string as it is, a number as it is written in Rust.
fn literal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a string or a number")]
    enum Literal {
        Text(String),
        Integer(i64),
        Float(f64),
    }
    Ok(Some(match Literal::deserialize(d)? {
        Literal::Text(text) => text,
        Literal::Integer(n) => n.to_string(),
        Literal::Float(x) => x.to_string(),
    }))
}

/// `name` is a plain identifier (lower-case letters, digits, `_`, not starting with a digit):
/// safe as a ClickHouse, Avro and URL name.
fn identifier(field: &str, name: &str) -> Result<(), (String, String, String)> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    if first_ok && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Ok(());
    }
    let fix = "use lower-case letters, digits and `_`, starting with a letter";
    Err(problem(
        field,
        &format!("`{name}` is not a plain name"),
        fix,
    ))
}

fn problem(field: &str, problem: &str, fix: &str) -> (String, String, String) {
    (field.to_owned(), problem.to_owned(), fix.to_owned())
}

/// A dataset a service serves: its spec and its compiled plan.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub spec: Spec,
    /// Reads files of every version since `first` (so a column appended since may be absent).
    pub plan: std::sync::Arc<plan::Plan>,
}

impl Dataset {
    /// `spec`, its files read as written for any version since `first`, its first recorded
    /// version (none: every column required).
    fn of(spec: Spec, first: Option<&Spec>) -> Dataset {
        let plan = match first {
            Some(first) => plan::Plan::compile_since(&spec, first),
            None => plan::Plan::compile(&spec),
        };
        Dataset {
            spec,
            plan: std::sync::Arc::new(plan),
        }
    }
}

/// The datasets of a directory (`SLUICE_DATASETS_DIR`): every `<name>.toml` in it, each named
/// after its file. `game_rounds` is built in (its tables are the migrations'): it is there whether or not the directory holds it, and a `game_rounds.toml` there
/// must declare the same dataset.
#[derive(Debug, Clone)]
pub struct Catalog {
    datasets: Vec<Dataset>,
}

impl Catalog {
    /// `game_rounds` alone.
    pub fn builtin() -> Catalog {
        let spec = Spec::parse("datasets/game_rounds.toml", GAME_ROUNDS_TOML)
            .expect("the game_rounds spec is valid (tested)");
        Catalog {
            datasets: vec![Dataset::of(spec, None)],
        }
    }

    /// The datasets a service knows from its `…_DATASETS_DIR` setting: the built-in ones, and
    /// every spec in `dir` when it is set (and not empty).
    pub fn of_dir(dir: Option<&str>) -> Result<Catalog, SpecError> {
        match dir {
            Some(dir) if !dir.is_empty() => Catalog::read(Path::new(dir)),
            _ => Ok(Catalog::builtin()),
        }
    }

    /// The built-in datasets and every spec in `dir`, checked; each plan reads the files of
    /// every version since the first recorded in `dir/history` (see [`history::first_recorded`]).
    pub fn read(dir: &Path) -> Result<Catalog, SpecError> {
        let invalid = |file: &Path, field: &str, problem: String, fix: &str| SpecError::Invalid {
            file: file.display().to_string(),
            field: field.to_owned(),
            problem,
            fix: fix.to_owned(),
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            let fix = "set SLUICE_DATASETS_DIR to a readable directory of `<name>.toml` files";
            invalid(dir, "(directory)", e.to_string(), fix)
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut catalog = Catalog::builtin();
        for path in paths {
            let spec = Spec::read(&path)?;
            if path.file_stem().and_then(|s| s.to_str()) != Some(spec.name.as_str()) {
                let fix = format!(
                    "name the file `{}.toml`, or the dataset after the file",
                    spec.name
                );
                return Err(invalid(
                    &path,
                    "name",
                    format!("`{}` in another file", spec.name),
                    &fix,
                ));
            }
            match catalog.get(&spec.name) {
                Some(builtin) if builtin.spec == spec => {}
                Some(_) => {
                    let fix = "declare a new dataset instead; the built-in one cannot change yet";
                    return Err(invalid(
                        &path,
                        "name",
                        format!("`{}` is built in and differs", spec.name),
                        fix,
                    ));
                }
                None => {
                    let first = history::first_recorded(dir, &spec.name)?;
                    catalog.datasets.push(Dataset::of(spec, first.as_ref()));
                }
            }
        }
        Ok(catalog)
    }

    /// The datasets besides `game_rounds` that a service serves: `names` (comma separated, as
    /// the setting `setting` — e.g. `SLUICE_CONSUMER_DATASETS` — holds them) of the specs in
    /// `dir` (the service's `…_DATASETS_DIR`; the working directory when unset). None when
    /// `names` is empty, and then `dir` is not read.
    pub fn served(
        dir: Option<&str>,
        names: &str,
        setting: &str,
    ) -> Result<Vec<Dataset>, SpecError> {
        let names: Vec<&str> = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let dir = directory(dir);
        let catalog = Catalog::read(dir)?;
        names
            .into_iter()
            .map(|name| match catalog.get(name) {
                Some(dataset) if name != GAME_ROUNDS => Ok(dataset.clone()),
                _ => Err(SpecError::Invalid {
                    file: dir.display().to_string(),
                    field: setting.to_owned(),
                    problem: format!("no dataset `{name}` to serve besides game_rounds"),
                    fix: format!("name datasets of {setting}_DIR (game_rounds is always served)"),
                }),
            })
            .collect()
    }

    /// The dataset named `name`.
    pub fn get(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.spec.name == name)
    }

    /// Every dataset, the built-in ones first, then by name.
    pub fn iter(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.iter()
    }
}

/// The directory of a service's specs, as its `…_DATASETS_DIR` setting names it: the working
/// directory when unset or empty.
pub fn directory(setting: Option<&str>) -> &Path {
    Path::new(setting.filter(|d| !d.is_empty()).unwrap_or("."))
}

/// The built-in dataset's name.
pub const GAME_ROUNDS: &str = "game_rounds";

/// `datasets/game_rounds.toml`, the first spec.
pub const GAME_ROUNDS_TOML: &str = include_str!("../../../../datasets/game_rounds.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn game_rounds() -> Spec {
        Spec::parse("datasets/game_rounds.toml", GAME_ROUNDS_TOML).unwrap()
    }

    fn refused(edit: impl FnOnce(&str) -> String) -> String {
        let text = edit(GAME_ROUNDS_TOML);
        Spec::parse("x.toml", &text).unwrap_err().to_string()
    }

    #[test]
    fn the_game_rounds_spec_parses_with_its_identity_key_and_time() {
        let spec = game_rounds();
        assert_eq!(spec.identity, ["user_id", "game_instance_id"]);
        assert_eq!(spec.column("real_amount_bet").unwrap().scale, Some(4));
        assert_eq!(spec.column("upload_id").unwrap().source, Source::Upload);
        assert_eq!(spec.columns.len(), 11);
    }

    #[test]
    fn a_mistake_names_the_file_the_field_and_the_fix() {
        let error = refused(|t| t.replace("time = \"created_timestamp\"", "time = \"game_id\""));
        assert_eq!(
            error,
            "x.toml: `time`: `game_id` is not a timestamp; name a column of type \"timestamp\""
        );
        let error = refused(|t| {
            t.replace("scale = 4\nnullable = true\nnull_tokens = [\"\", \"NaN\"]\ndoc = \"Scaled by 10^4.\"\n\n[[columns]]\nname = \"bonus_amount_bet\"", "nullable = true\nnull_tokens = [\"\", \"NaN\"]\ndoc = \"Scaled by 10^4.\"\n\n[[columns]]\nname = \"bonus_amount_bet\"")
        });
        assert!(
            error.starts_with("x.toml: `columns[4]`: a decimal without a scale; add `scale"),
            "{error}"
        );
        let error =
            refused(|t| t.replace("kafka_key = \"user_id\"", "kafka_key = \"real_amount_bet\""));
        assert!(
            error.contains("`kafka_key`: `real_amount_bet` may be missing"),
            "{error}"
        );
        let error = refused(|t| t.replace("name = \"game_id\"", "name = \"Game-Id\""));
        assert!(
            error.contains("`columns[3].name`: `Game-Id` is not a plain name"),
            "{error}"
        );
        let error = refused(|t| t.replace("name = \"provider\"", "name = \"game_name\""));
        assert!(error.contains("`columns[9]`: `game_name` twice"), "{error}");
        let error = refused(|t| t.replace("check = \"hex32\"", "check = \"hex32\"\nscale = 2"));
        assert!(error.contains("`scale` is only for decimals"), "{error}");
    }

    #[test]
    fn a_default_is_a_value_of_its_column_written_as_its_cells_are() {
        let with = |default: &str| {
            GAME_ROUNDS_TOML.replace(
                "name = \"game_id\"\ntype = \"uint64\"",
                &format!("name = \"game_id\"\ntype = \"uint64\"\ndefault = {default}"),
            )
        };
        let spec = Spec::parse("x.toml", &with("24002")).unwrap();
        assert_eq!(
            spec.column("game_id").unwrap().default.as_deref(),
            Some("24002")
        );
        let error = refused(|_| with("\"x\""));
        assert!(
            error.starts_with(
                "x.toml: `columns[3].default`: `x` is not a non-negative integer; give a value"
            ),
            "{error}"
        );
        let error = refused(|_| with("true"));
        assert!(error.contains("a string or a number"), "{error}");
        let error = refused(|t| {
            t.replace(
                "null_tokens = [\"\", \"NaN\"]\ndoc = \"Scaled by 10^4.\"\n\n[[columns]]\nname = \"bonus_amount_bet\"",
                "null_tokens = [\"\", \"NaN\"]\ndefault = \"0\"\ndoc = \"Scaled by 10^4.\"\n\n[[columns]]\nname = \"bonus_amount_bet\"",
            )
        });
        assert!(
            error.contains("`columns[4]`: a default on a nullable column"),
            "{error}"
        );
        let error = refused(|t| {
            t.replace(
                "check = \"hex32\"",
                "check = \"hex32\"\ndefault = \"nobody\"",
            )
        });
        assert!(
            error.contains("`columns[2].default`: not 32 hexadecimal characters"),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_and_types_are_refused_with_their_place() {
        let error = refused(|t| t.replace("type = \"uint64\"", "type = \"u64\""));
        assert!(
            error.starts_with("x.toml: TOML parse error at line"),
            "{error}"
        );
        assert!(error.contains("unknown variant `u64`"), "{error}");
        let error = refused(|t| t.replace("kafka_key =", "partition_by = \"day\"\nkafka_key ="));
        assert!(error.contains("unknown field `partition_by`"), "{error}");
    }

    #[test]
    fn every_shipped_spec_is_valid_and_named_after_its_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
        let catalog = Catalog::read(&dir).unwrap();
        let names: Vec<&str> = catalog.iter().map(|d| d.spec.name.as_str()).collect();
        assert_eq!(
            names,
            ["game_rounds", "amazon_reviews", "events", "records"]
        );
    }

    #[test]
    fn a_catalog_reads_the_files_of_every_version_since_the_first_recorded() {
        let dir = std::env::temp_dir().join(format!("sluice-evolved-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("history")).unwrap();
        let (evolved, _) = plan::evolved_records();
        let first = include_str!("../../../../datasets/records.toml");
        let appended = first.replace(
            "[[endpoints]]",
            "[[columns]]\nname = \"note\"\ntype = \"string\"\nnullable = true\n\n\
             [[columns]]\nname = \"rank\"\ntype = \"uint64\"\ndefault = 3\n\n[[endpoints]]",
        );
        std::fs::write(dir.join("records.toml"), &appended).unwrap();
        let header = ["id", "created_at", "country", "category", "amount"];
        // Without a history, the spec is its own first version.
        let catalog = Catalog::read(&dir).unwrap();
        let records = catalog.get("records").unwrap();
        assert_eq!(records.spec, evolved);
        let error = records.plan.bind(header).unwrap_err();
        assert_eq!(
            error,
            crate::csv::HeaderError::MissingColumns(vec!["note", "rank"])
        );
        std::fs::write(dir.join("history/records.v1.toml"), first).unwrap();
        std::fs::write(dir.join("history/records.v2.toml"), &appended).unwrap();
        let catalog = Catalog::read(&dir).unwrap();
        let bound = catalog.get("records").unwrap().plan.bind(header).unwrap();
        assert_eq!(bound.position(6), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spec_in_a_file_of_another_name_or_changing_game_rounds_is_refused() {
        let dir = std::env::temp_dir().join(format!("sluice-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rounds.toml"), GAME_ROUNDS_TOML).unwrap();
        let error = Catalog::read(&dir).unwrap_err().to_string();
        assert!(error.ends_with("rounds.toml: `name`: `game_rounds` in another file; name the file `game_rounds.toml`, or the dataset after the file"), "{error}");
        std::fs::remove_file(dir.join("rounds.toml")).unwrap();
        let changed =
            GAME_ROUNDS_TOML.replace("kafka_key = \"user_id\"", "kafka_key = \"game_id\"");
        std::fs::write(dir.join("game_rounds.toml"), changed).unwrap();
        let error = Catalog::read(&dir).unwrap_err().to_string();
        assert!(
            error.contains("`game_rounds` is built in and differs"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
