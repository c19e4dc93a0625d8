//! A dataset's recorded versions and the rules of its evolution (issue 14).
//!
//! Every version of a dataset's spec that was shipped is kept as it was written, in
//! `history/<name>.v<N>.toml` beside the specs (`datasets/history/events.v1.toml`), as the game
//! rounds keep their earlier Avro schemas in `schemas/history/game_round.v<N>.avsc`. The spec
//! may differ from every recorded version only by columns appended at the end, each nullable or
//! with a default: then a record written under any recorded version is still read — its header
//! (the fingerprint of that version's schema) names the version, and the columns it lacks read
//! as null or their default, as Avro's schema resolution reads them. Anything else (a column
//! removed, renamed, moved or retyped, a new column with neither, another identity, Kafka key,
//! time column, record name or table) would leave earlier records unreadable or read wrong, and
//! is refused ([`compare`]): such a change is a new dataset, and a copy of the rows.
//!
//! `cargo xtask datasets check` holds `datasets/` to these rules, and records the current
//! version with `--record`; the consumer reads a served dataset's history at start
//! ([`History::read`]) and converts the records of every version recorded in it
//! ([`super::rowbinary::Converter::reading`]). Files written for an earlier version are read
//! too: every plan a [`super::Catalog`] compiles lets a file lack the columns appended since
//! the first recorded version ([`first_recorded`], [`super::plan::Plan::compile_since`]).

use std::path::{Path, PathBuf};

use super::plan::default_datum;
use super::{Column, Source, Spec, SpecError};

/// How a spec differs from an earlier version whose records it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The same records (docs, null tokens, formats, checks and endpoints may differ).
    Same,
    /// These columns appended, each nullable or with a default.
    Appended(Vec<String>),
}

/// Why a spec cannot read an earlier version's records: its field, and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub problem: String,
}

/// How `later` differs from `earlier`, or why it cannot read `earlier`'s records.
pub fn compare(earlier: &Spec, later: &Spec) -> Result<Change, Refusal> {
    let avro = |spec: &Spec| format!("{}.{}", spec.avro.namespace, spec.avro.name);
    same("avro", avro(earlier), avro(later))?;
    let table = |spec: &Spec| spec.versions_table();
    same("versions_table", table(earlier), table(later))?;
    same(
        "identity",
        earlier.identity.join(", "),
        later.identity.join(", "),
    )?;
    same("kafka_key", &earlier.kafka_key, &later.kafka_key)?;
    same("time", &earlier.time, &later.time)?;
    for (index, column) in earlier.columns.iter().enumerate() {
        kept(later, index, column)?;
    }
    let appended = later
        .columns
        .get(earlier.columns.len()..)
        .unwrap_or_default();
    let offset = earlier.columns.len();
    for (index, column) in appended.iter().enumerate() {
        if !column.nullable && column.default.is_none() {
            let problem = format!(
                "`{}` is new and neither nullable nor with a default: records written before \
                 it have no value for it",
                column.name
            );
            return Err(refusal(&format!("columns[{}]", offset + index), problem));
        }
    }
    Ok(match appended.is_empty() {
        true => Change::Same,
        false => Change::Appended(appended.iter().map(|c| c.name.clone()).collect()),
    })
}

/// The field is the same in both versions.
fn same<T: PartialEq + std::fmt::Display>(
    field: &str,
    earlier: T,
    later: T,
) -> Result<(), Refusal> {
    match earlier == later {
        true => Ok(()),
        false => Err(refusal(field, format!("`{earlier}` before, `{later}` now"))),
    }
}

/// The earlier version's column `index` is `later`'s too, in the same place, the same.
fn kept(later: &Spec, index: usize, column: &Column) -> Result<(), Refusal> {
    let field = format!("columns[{index}]");
    let name = &column.name;
    match later.columns.iter().position(|c| c.name == *name) {
        None => Err(refusal(
            &field,
            format!("`{name}` is gone (removed or renamed)"),
        )),
        Some(now) if now != index => {
            Err(refusal(&field, format!("`{name}` moved to columns[{now}]")))
        }
        Some(_) if Shape::of(&later.columns[index]) != Shape::of(column) => {
            let (before, now) = (describe(column), describe(&later.columns[index]));
            Err(refusal(&field, format!("`{name}` was {before}, now {now}")))
        }
        Some(_) => Ok(()),
    }
}

/// What of a column its records and its table depend on.
#[derive(PartialEq)]
struct Shape {
    kind: super::Kind,
    scale: Option<u32>,
    nullable: bool,
    source: Source,
    /// The default as written into a record (so `"1.5"` and `"1.50"` are one default).
    default: Option<Vec<u8>>,
}

impl Shape {
    fn of(column: &Column) -> Shape {
        Shape {
            kind: column.kind,
            scale: column.scale,
            nullable: column.nullable,
            source: column.source,
            default: default_datum(column).ok().flatten(),
        }
    }
}

/// A column's shape in words: `nullable decimal (scale 4)`, `string with default ""`.
fn describe(column: &Column) -> String {
    let mut text = column.kind.name().to_owned();
    if let Some(scale) = column.scale {
        text += &format!(" (scale {scale})");
    }
    if column.nullable {
        text = format!("nullable {text}");
    }
    if column.source == Source::Upload {
        text += " from the upload";
    }
    if let Some(default) = &column.default {
        text += &format!(" with default \"{default}\"");
    }
    text
}

fn refusal(field: &str, problem: String) -> Refusal {
    Refusal {
        field: field.to_owned(),
        problem,
    }
}

/// What to do instead of changing `spec` in a way its recorded versions' records cannot take.
pub fn new_dataset_fix(spec: &Spec) -> String {
    let next = successor(&spec.name);
    format!(
        "declare a new dataset `{next}` (datasets/{next}.toml) with the change and copy the rows \
         over (`INSERT INTO {next}_versions (…) SELECT … FROM {table}`), or undo the change",
        table = spec.versions_table(),
    )
}

/// `events` → `events_v2`, `events_v2` → `events_v3`.
fn successor(name: &str) -> String {
    let numbered = name
        .rsplit_once("_v")
        .and_then(|(base, n)| Some((base, n.parse::<u32>().ok()?)));
    match numbered {
        Some((base, n)) => format!("{base}_v{}", n + 1),
        None => format!("{name}_v2"),
    }
}

/// A dataset's recorded versions, each of whose records its spec reads.
#[derive(Debug, Clone)]
pub struct History {
    spec: Spec,
    versions: Vec<Recorded>,
}

/// One recorded version.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `N` of `<name>.v<N>.toml`.
    pub number: u32,
    pub file: PathBuf,
    pub spec: Spec,
    /// How the current spec differs from it.
    pub change: Change,
}

impl History {
    /// The versions of `spec` recorded in `dir/history` (`dir` holding `spec`'s file), oldest
    /// first; refused, naming the spec's file, the field and the fix, when the spec cannot read
    /// the records of one of them (the latest named first).
    pub fn read(dir: &Path, spec: &Spec) -> Result<History, SpecError> {
        let mut recorded = Vec::new();
        for (number, file) in recorded_files(dir, &spec.name)? {
            let earlier = Spec::read(&file)?;
            recorded.push((number, file, earlier));
        }
        History::of(dir, spec, recorded)
    }

    /// The versions of the built-in `game_rounds` (`datasets/history/game_rounds.v<N>.toml`,
    /// compiled in with its spec): every service reads them wherever its datasets are.
    pub fn game_rounds() -> History {
        let dir = Path::new("datasets");
        let spec = Spec::parse("datasets/game_rounds.toml", super::GAME_ROUNDS_TOML)
            .expect("the game_rounds spec is valid (tested)");
        let recorded = GAME_ROUNDS_HISTORY.iter().map(|(number, text)| {
            let file = history_dir(dir).join(format!("game_rounds.v{number}.toml"));
            let earlier = Spec::parse(&file.display().to_string(), text)
                .expect("game_rounds' recorded versions are valid (tested)");
            (*number, file, earlier)
        });
        History::of(dir, &spec, recorded.collect())
            .expect("game_rounds reads its recorded versions (tested)")
    }

    /// `spec` with its `recorded` versions, oldest first, each checked ([`History::read`]).
    fn of(
        dir: &Path,
        spec: &Spec,
        recorded: Vec<(u32, PathBuf, Spec)>,
    ) -> Result<History, SpecError> {
        let mut versions = Vec::new();
        for (number, file, earlier) in recorded.into_iter().rev() {
            if earlier.name != spec.name {
                let fix = format!("record only versions of `{}` under its name", spec.name);
                let problem = format!(
                    "`{}` recorded as a version of `{}`",
                    earlier.name, spec.name
                );
                return Err(invalid(&file, "name", problem, fix));
            }
            let change = compare(&earlier, spec).map_err(|refusal| {
                let problem = format!("{} (recorded in {})", refusal.problem, file.display());
                let file = dir.join(format!("{}.toml", spec.name));
                invalid(&file, &refusal.field, problem, new_dataset_fix(spec))
            })?;
            versions.push(Recorded {
                number,
                file,
                spec: earlier,
                change,
            });
        }
        versions.reverse();
        Ok(History {
            spec: spec.clone(),
            versions,
        })
    }

    /// The current spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The latest recorded version.
    pub fn latest(&self) -> Option<&Recorded> {
        self.versions.last()
    }

    /// The recorded versions whose records lack some of the spec's columns, oldest first.
    pub fn earlier(&self) -> impl Iterator<Item = &Spec> {
        (self.versions.iter())
            .filter(|v| v.change != Change::Same)
            .map(|v| &v.spec)
    }

    /// The file the current spec is recorded in next: `dir/history/<name>.v<N>.toml`.
    pub fn next_file(&self, dir: &Path) -> PathBuf {
        let number = self.latest().map_or(1, |v| v.number + 1);
        history_dir(dir).join(format!("{}.v{number}.toml", self.spec.name))
    }
}

/// The first recorded version of the dataset `name` (the oldest of `dir/history`), if any:
/// the columns a file of the dataset must have are its columns
/// ([`super::plan::Plan::compile_since`]). Read as it is written, not compared with the spec
/// ([`History::read`] and `cargo xtask datasets check` do that).
pub fn first_recorded(dir: &Path, name: &str) -> Result<Option<Spec>, SpecError> {
    match recorded_files(dir, name)?.first() {
        Some((_, file)) => Spec::read(file).map(Some),
        None => Ok(None),
    }
}

/// `datasets/history/game_rounds.v<N>.toml`, by `N`.
const GAME_ROUNDS_HISTORY: &[(u32, &str)] = &[
    (
        1,
        include_str!("../../../../datasets/history/game_rounds.v1.toml"),
    ),
    (
        2,
        include_str!("../../../../datasets/history/game_rounds.v2.toml"),
    ),
];

fn history_dir(dir: &Path) -> PathBuf {
    dir.join("history")
}

/// The files of `name`'s recorded versions (`<name>.v<N>.toml`) with their `N`, in order;
/// none without a history directory.
fn recorded_files(dir: &Path, name: &str) -> Result<Vec<(u32, PathBuf)>, SpecError> {
    let history = history_dir(dir);
    let entries = match std::fs::read_dir(&history) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            let fix = "make it a readable directory of `<name>.v<N>.toml` files".to_owned();
            return Err(invalid(&history, "(directory)", e.to_string(), fix));
        }
    };
    let prefix = format!("{name}.");
    let mut files = Vec::new();
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        let Some(rest) =
            (path.file_name().and_then(|n| n.to_str())).and_then(|n| n.strip_prefix(&prefix))
        else {
            continue;
        };
        let number = rest.strip_prefix('v').and_then(|r| r.strip_suffix(".toml"));
        match number.and_then(|n| n.parse::<u32>().ok()) {
            Some(number) => files.push((number, path)),
            None => {
                let fix = format!("name it `{name}.v<N>.toml`, N its version");
                return Err(invalid(
                    &path,
                    "(file name)",
                    "not a version's name".into(),
                    fix,
                ));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn invalid(file: &Path, field: &str, problem: String, fix: String) -> SpecError {
    SpecError::Invalid {
        file: file.display().to_string(),
        field: field.to_owned(),
        problem,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `datasets/records.toml`: id, created_at, country, category, amount, upload_id.
    const RECORDS: &str = include_str!("../../../../datasets/records.toml");

    const COUNTRY: &str = "[[columns]]\nname = \"country\"\ntype = \"string\"\ncheck = \"alpha3\"\ndoc = \"ISO 3166 alpha-3 code, stored in upper case (USA).\"\n\n";
    const CATEGORY: &str = "[[columns]]\nname = \"category\"\ntype = \"string\"\n\n";

    fn spec(text: &str) -> Spec {
        Spec::parse("records.toml", text).unwrap()
    }

    /// `RECORDS` with `column` appended.
    fn appended(column: &str) -> String {
        let at = RECORDS.find("[[endpoints]]").unwrap();
        format!(
            "{}[[columns]]\n{column}\n\n{}",
            &RECORDS[..at],
            &RECORDS[at..]
        )
    }

    fn refused(later: &str) -> Refusal {
        compare(&spec(RECORDS), &spec(later)).unwrap_err()
    }

    #[test]
    fn the_same_records_are_the_same_version_whatever_the_docs_and_endpoints() {
        let later = RECORDS
            .replace("doc = \"One record.\"", "doc = \"One record, documented.\"")
            .replace("check = \"alpha3\"\n", "")
            .replace(
                "filters = [\"country\", \"from\", \"to\"]",
                "filters = [\"from\", \"to\"]",
            );
        assert_eq!(compare(&spec(RECORDS), &spec(&later)), Ok(Change::Same));
    }

    #[test]
    fn nullable_or_defaulted_columns_appended_at_the_end_are_compatible() {
        let later = appended("name = \"note\"\ntype = \"string\"\nnullable = true");
        assert_eq!(
            compare(&spec(RECORDS), &spec(&later)),
            Ok(Change::Appended(vec!["note".to_owned()]))
        );
        let later = appended("name = \"rank\"\ntype = \"uint64\"\ndefault = 3");
        assert_eq!(
            compare(&spec(RECORDS), &spec(&later)),
            Ok(Change::Appended(vec!["rank".to_owned()]))
        );
    }

    #[test]
    fn every_other_change_is_refused_naming_the_field() {
        let cases = [
            (
                appended("name = \"rank\"\ntype = \"uint64\""),
                "columns[6]",
                "`rank` is new and neither nullable nor with a default",
            ),
            (
                RECORDS.replace("name = \"category\"", "name = \"kind\""),
                "columns[3]",
                "`category` is gone (removed or renamed)",
            ),
            (
                RECORDS.replace(CATEGORY, ""),
                "columns[3]",
                "`category` is gone",
            ),
            (
                RECORDS.replace("scale = 2\n", "scale = 3\n"),
                "columns[4]",
                "`amount` was decimal (scale 2), now decimal (scale 3)",
            ),
            (
                RECORDS.replace(
                    "name = \"category\"\ntype = \"string\"",
                    "name = \"category\"\ntype = \"int64\"",
                ),
                "columns[3]",
                "`category` was string, now int64",
            ),
            (
                RECORDS.replace(
                    "name = \"category\"\ntype = \"string\"",
                    "name = \"category\"\ntype = \"string\"\nnullable = true",
                ),
                "columns[3]",
                "`category` was string, now nullable string",
            ),
            (
                RECORDS.replace(
                    "name = \"category\"\ntype = \"string\"",
                    "name = \"category\"\ntype = \"string\"\ndefault = \"none\"",
                ),
                "columns[3]",
                "`category` was string, now string with default \"none\"",
            ),
            (
                RECORDS.replace(
                    &format!("{COUNTRY}{CATEGORY}"),
                    &format!("{CATEGORY}{COUNTRY}"),
                ),
                "columns[2]",
                "`country` moved to columns[3]",
            ),
            (
                RECORDS.replace("identity = [\"id\"]", "identity = [\"id\", \"country\"]"),
                "identity",
                "`id` before, `id, country` now",
            ),
            (
                RECORDS.replace("kafka_key = \"id\"", "kafka_key = \"country\""),
                "kafka_key",
                "`id` before, `country` now",
            ),
            (
                appended(
                    "name = \"seen_at\"\ntype = \"timestamp\"\nformat = \"epoch_s\"\ndefault = 0",
                )
                .replace("time = \"created_at\"", "time = \"seen_at\""),
                "time",
                "`created_at` before, `seen_at` now",
            ),
            (
                RECORDS.replace("name = \"Record\"", "name = \"Row\""),
                "avro",
                "`io.sluice.Record` before, `io.sluice.Row` now",
            ),
            (
                RECORDS.replace(
                    "time = \"created_at\"",
                    "time = \"created_at\"\nversions_table = \"records_rows\"",
                ),
                "versions_table",
                "`records_versions` before, `records_rows` now",
            ),
        ];
        for (later, field, problem) in cases {
            let refusal = refused(&later);
            assert_eq!(refusal.field, field, "{refusal:?}");
            assert!(refusal.problem.starts_with(problem), "{refusal:?}");
        }
    }

    #[test]
    fn a_default_is_compared_by_value() {
        let with = |default: &str| {
            appended(&format!(
                "name = \"rate\"\ntype = \"decimal\"\nscale = 2\ndefault = {default}"
            ))
        };
        assert_eq!(
            compare(&spec(&with("\"1.5\"")), &spec(&with("1.50"))),
            Ok(Change::Same)
        );
        let refusal = compare(&spec(&with("\"1.5\"")), &spec(&with("\"2\""))).unwrap_err();
        assert_eq!(refusal.field, "columns[6]");
    }

    #[test]
    fn the_fix_is_a_new_dataset_and_a_copy() {
        assert_eq!(successor("events"), "events_v2");
        assert_eq!(successor("events_v2"), "events_v3");
        assert_eq!(successor("events_view"), "events_view_v2");
        assert!(new_dataset_fix(&spec(RECORDS)).starts_with(
            "declare a new dataset `records_v2` (datasets/records_v2.toml) with the change and \
             copy the rows over (`INSERT INTO records_v2_versions (…) SELECT … FROM records_versions`)"
        ));
    }

    #[test]
    fn game_rounds_reads_the_records_of_its_first_version_by_their_recorded_avro_schema() {
        use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
        let history = History::game_rounds();
        let earlier: Vec<&Spec> = history.earlier().collect();
        assert_eq!(earlier.len(), 1, "{history:?}");
        let change = &history.versions[0].change;
        assert_eq!(*change, Change::Appended(vec!["upload_id".into()]));
        assert_eq!(history.latest().map(|v| &v.change), Some(&Change::Same));
        let v1 = include_str!("../../../../schemas/history/game_round.v1.avsc");
        let v1 = apache_avro::Schema::parse_str(v1).unwrap();
        let header = RabinFingerprintHeader::from_schema(&v1).build_header();
        assert_eq!(
            super::super::plan::Plan::compile(earlier[0]).header(),
            header
        );
    }

    /// A fresh directory holding `files` (path, text).
    fn directory(files: &[(&str, &str)]) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sluice-history-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_history_holds_the_versions_whose_records_the_spec_still_reads() {
        let v2 = appended("name = \"note\"\ntype = \"string\"\nnullable = true");
        let current = v2.replace(
            "nullable = true\n",
            "nullable = true\n\n[[columns]]\nname = \"rank\"\ntype = \"uint64\"\ndefault = 3\n",
        );
        let dir = directory(&[
            ("history/records.v1.toml", RECORDS),
            ("history/records.v2.toml", &v2),
            ("history/recordsx.v1.toml", "not read"),
            ("history/events.v1.toml", "not read"),
        ]);
        let history = History::read(&dir, &spec(&current)).unwrap();
        let earlier: Vec<usize> = history.earlier().map(|s| s.columns.len()).collect();
        assert_eq!(earlier, [6, 7]);
        let latest = history.latest().unwrap();
        assert_eq!(
            (latest.number, &latest.change),
            (2, &Change::Appended(vec!["rank".into()]))
        );
        assert_eq!(history.next_file(&dir), dir.join("history/records.v3.toml"));

        let history = History::read(&dir, &spec(&v2)).unwrap();
        assert_eq!(history.latest().unwrap().change, Change::Same);
        assert_eq!(
            history.earlier().count(),
            1,
            "the version the spec is has no reader of its own"
        );
        let empty = directory(&[]);
        let history = History::read(&empty, &spec(RECORDS)).unwrap();
        assert!(history.latest().is_none());
        assert_eq!(
            history.next_file(&empty),
            empty.join("history/records.v1.toml")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spec_that_cannot_read_a_recorded_version_is_refused_with_file_field_and_fix() {
        let current = RECORDS.replace("scale = 2\n", "scale = 3\n");
        let dir = directory(&[("history/records.v1.toml", RECORDS)]);
        let error = History::read(&dir, &spec(&current))
            .unwrap_err()
            .to_string();
        let expected = format!(
            "{}: `columns[4]`: `amount` was decimal (scale 2), now decimal (scale 3) (recorded in {}); declare a new dataset `records_v2`",
            dir.join("records.toml").display(),
            dir.join("history/records.v1.toml").display(),
        );
        assert!(error.starts_with(&expected), "{error}");

        let dir = directory(&[("history/records.old.toml", RECORDS)]);
        let error = History::read(&dir, &spec(RECORDS)).unwrap_err().to_string();
        assert!(error.contains("records.old.toml: `(file name)`: not a version's name; name it `records.v<N>.toml`"), "{error}");
        let other = RECORDS.replace("name = \"records\"", "name = \"others\"");
        let dir = directory(&[("history/records.v1.toml", &other)]);
        let error = History::read(&dir, &spec(RECORDS)).unwrap_err().to_string();
        assert!(
            error.contains("`others` recorded as a version of `records`"),
            "{error}"
        );
    }
}
