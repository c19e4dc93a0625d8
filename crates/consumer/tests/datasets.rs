//! A dataset declared in a file (`datasets/records.toml`), served by the consumer beside game
//! rounds: its records land in its versions table, a later version beside the earlier one, a
//! redelivery once, and what the table cannot hold in the quarantine; a spec evolved (columns
//! appended) reads the records of its recorded versions, and a table it cannot fill refuses it.

use std::borrow::Cow;
use std::time::Duration;

use sluice_schema::dataset::plan::{Cell, Plan, Record};
use sluice_schema::dataset::Spec;
use sluice_testkit::stack::workspace_root;
use sluice_testkit::{clickhouse, kafka, unique};

mod common;

use common::*;

/// The message of a row whose cells are given per column of `plan` (a `records` row: id,
/// created_at, country, category, amount; the upload's is not read).
fn record(plan: &Plan, cells: &[&str]) -> Vec<u8> {
    let mut record = Record::new();
    plan.encode(1, "upload-1", false, &mut record, |c| {
        Ok(Some(Cell::Text(Cow::Borrowed(cells[c]))))
    })
    .unwrap();
    record.bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_datasets_records_land_in_its_versions_table_exactly_once() {
    let spec = Spec::read(&workspace_root().join("datasets/records.toml")).unwrap();
    let plan = Plan::compile(&spec);
    let prefix = format!("{}.", unique("datasets"));
    let (topic, group, database) = (
        format!("{prefix}records"),
        unique("group"),
        unique("consumer"),
    );
    kafka::create_topic(&topic, PARTITIONS).await;
    let mut messages: Vec<Vec<u8>> = (1..=5)
        .map(|id| {
            let id = id.to_string();
            record(&plan, &[&id, "2024-01-02 03:04:05", "USA", "Books", "10.5"])
        })
        .collect();
    // A later version of record 2 (a corrected re-upload), and two messages the table cannot
    // hold: not of this schema, and cut short.
    messages.push(record(
        &plan,
        &["2", "2024-01-02 03:04:05", "GBR", "Books", "7"],
    ));
    messages.push(b"not a record".to_vec());
    let cut = record(&plan, &["6", "2024-01-02 03:04:05", "USA", "Toys", "1"]);
    messages.push(cut[..cut.len() - 4].to_vec());
    kafka::produce(&topic, "records", &messages).await;

    let configure = |group: &str| {
        let mut config = config(&unique("rounds"), group, &database);
        config.datasets_dir = Some(workspace_root().join("datasets").display().to_string());
        config.datasets = "records".into();
        config.dataset_topic_prefix = prefix.clone();
        config
    };
    let (shutdown, handle) = spawn_consumer(configure(&group)).await;
    wait_for_committed(&format!("{group}.records"), &topic, messages.len() as i64).await;
    shutdown.cancel();
    handle.await.unwrap();

    let latest = format!(
        "SELECT id, argMax(country, version), toString(argMax(amount, version)), count() \
         FROM {database}.records_versions FINAL GROUP BY id ORDER BY id"
    );
    let expected =
        "1\tUSA\t10.50\t1\n2\tGBR\t7.00\t2\n3\tUSA\t10.50\t1\n4\tUSA\t10.50\t1\n5\tUSA\t10.50\t1";
    assert_eq!(clickhouse::query(&latest).await, expected);
    let quarantined = clickhouse::query(&format!(
        "SELECT error FROM {database}.quarantine FINAL WHERE source_topic = '{topic}' ORDER BY error"
    ))
    .await;
    assert_eq!(
        quarantined,
        // TSV escapes the quote.
        "not a record of this dataset\\'s schema (unknown header)\nupload_id: the record ends early"
    );
    // …and on the dataset's dead-letter topic, unchanged, with the reason in a header.
    let dead = kafka::consume(
        &format!("{topic}.dlq"),
        PARTITIONS,
        2,
        Duration::from_secs(20),
    )
    .await;
    let mut letters: Vec<(Vec<u8>, bool)> = (dead.iter())
        .map(|r| {
            let reason = r
                .headers
                .iter()
                .any(|(k, v)| k == "sluice-error" && !v.is_empty());
            (r.payload.clone(), reason)
        })
        .collect();
    letters.sort();
    let mut unstored = vec![
        (b"not a record".to_vec(), true),
        (cut[..cut.len() - 4].to_vec(), true),
    ];
    unstored.sort();
    assert_eq!(letters, unstored);

    // Everything delivered again (another group reads the topic from its start): the same
    // versions, so the same rows.
    let again = unique("group");
    let (shutdown, handle) = spawn_consumer(configure(&again)).await;
    wait_for_committed(&format!("{again}.records"), &topic, messages.len() as i64).await;
    shutdown.cancel();
    handle.await.unwrap();
    assert_eq!(clickhouse::query(&latest).await, expected);
}

/// `datasets/records.toml` with a nullable `note` and a `rate` defaulting to 1.5 appended.
fn evolved_records() -> String {
    let shipped = std::fs::read_to_string(workspace_root().join("datasets/records.toml")).unwrap();
    let at = shipped.find("[[endpoints]]").unwrap();
    let appended = "[[columns]]\nname = \"note\"\ntype = \"string\"\nnullable = true\n\
                    null_tokens = [\"\"]\n\n[[columns]]\nname = \"rate\"\ntype = \"decimal\"\n\
                    scale = 2\ndefault = \"1.5\"\n\n";
    format!("{}{appended}{}", &shipped[..at], &shipped[at..])
}

/// A fresh datasets directory holding `records.toml` as `spec`, and `history` files.
fn datasets_dir(spec: &str, history: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("datasets"));
    std::fs::create_dir_all(dir.join("history")).unwrap();
    std::fs::write(dir.join("records.toml"), spec).unwrap();
    for (name, text) in history {
        std::fs::write(dir.join("history").join(name), text).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_with_appended_columns_reads_the_recorded_versions_records_and_its_own() {
    let shipped = std::fs::read_to_string(workspace_root().join("datasets/records.toml")).unwrap();
    let evolved = evolved_records();
    let (old_plan, new_plan) = (
        Plan::compile(&Spec::parse("records.toml", &shipped).unwrap()),
        Plan::compile(&Spec::parse("records.toml", &evolved).unwrap()),
    );
    let prefix = format!("{}.", unique("datasets"));
    let (topic, group, database) = (
        format!("{prefix}records"),
        unique("group"),
        unique("consumer"),
    );
    kafka::create_topic(&topic, PARTITIONS).await;
    let configure = |dir: &std::path::Path| {
        let mut config = config(&unique("rounds"), &group, &database);
        config.datasets_dir = Some(dir.display().to_string());
        config.datasets = "records".into();
        config.dataset_topic_prefix = prefix.clone();
        config
    };
    let old = |id: &str| record(&old_plan, &[id, "2024-01-02 03:04:05", "USA", "Books", "1"]);

    // Before: the shipped spec, its table, two records.
    let before = datasets_dir(&shipped, &[]);
    kafka::produce(&topic, "records", &[old("1"), old("2")]).await;
    let (shutdown, handle) = spawn_consumer(configure(&before)).await;
    wait_for_committed(&format!("{group}.records"), &topic, 2).await;
    shutdown.cancel();
    handle.await.unwrap();

    // After: the evolved spec, the shipped one recorded as version 1; a record of each version.
    let after = datasets_dir(&evolved, &[("records.v1.toml", &shipped)]);
    let new = |cells: [&str; 2]| {
        let [note, rate] = cells;
        let row = [
            "4",
            "2024-01-02 03:04:05",
            "GBR",
            "Toys",
            "2",
            "",
            note,
            rate,
        ];
        record(&new_plan, &row)
    };
    kafka::produce(
        &topic,
        "records",
        &[old("3"), new(["hello", "2.25"]), new(["", "0"])],
    )
    .await;
    let (shutdown, handle) = spawn_consumer(configure(&after)).await;
    wait_for_committed(&format!("{group}.records"), &topic, 5).await;
    shutdown.cancel();
    handle.await.unwrap();

    let columns = clickhouse::query(&format!(
        "SELECT name, type FROM system.columns WHERE database = '{database}' \
         AND table = 'records_versions' AND name IN ('note', 'rate') ORDER BY name"
    ))
    .await;
    assert_eq!(columns, "note\tNullable(String)\nrate\tDecimal(18, 2)");
    let rows = clickhouse::query(&format!(
        "SELECT id, note, toString(rate) FROM {database}.records_versions FINAL \
         ORDER BY id, version"
    ))
    .await;
    // Rows stored before the column existed read as its default; records of version 1
    // arriving now get null and the default; the evolved spec's own records their values.
    assert_eq!(
        rows,
        "1\t\\N\t1.50\n2\t\\N\t1.50\n3\t\\N\t1.50\n4\thello\t2.25\n4\t\\N\t0.00"
    );
    let quarantined = clickhouse::query(&format!(
        "SELECT count() FROM {database}.quarantine WHERE source_topic = '{topic}'"
    ))
    .await;
    assert_eq!(quarantined, "0");
    std::fs::remove_dir_all(before).unwrap();
    std::fs::remove_dir_all(after).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versions_table_whose_columns_differ_from_the_spec_refuses_the_start() {
    let shipped = std::fs::read_to_string(workspace_root().join("datasets/records.toml")).unwrap();
    let retyped = shipped.replace("type = \"decimal\"\nscale = 2", "type = \"float64\"");
    assert_ne!(retyped, shipped);
    let evolved = evolved_records();
    let cases = [
        (
            retyped.as_str(),
            "ClickHouse table `records_versions`: `amount` is Float64 there, Decimal(18, 2) in \
             the spec; declare a new dataset `records_v2`",
        ),
        (
            evolved.as_str(),
            "ClickHouse table `records_versions`: `note` (Nullable(String)) is not a column of \
             the spec; declare a new dataset `records_v2`",
        ),
    ];
    for (made_by, refusal) in cases {
        let database = unique("consumer");
        let configure = |dir: &std::path::Path| {
            let mut config = config(&unique("rounds"), &unique("group"), &database);
            config.datasets_dir = Some(dir.display().to_string());
            config.datasets = "records".into();
            config.dataset_topic_prefix = format!("{}.", unique("datasets"));
            config
        };
        // The table as another spec of the dataset made it.
        let other = datasets_dir(made_by, &[]);
        let application = sluice_consumer::Application::build(configure(&other)).await;
        drop(application.expect("the consumer starts with the spec that makes the table"));
        let dir = datasets_dir(&shipped, &[]);
        let error = match sluice_consumer::Application::build(configure(&dir)).await {
            Ok(_) => panic!("the consumer started on a table it cannot fill"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(refusal), "{error}");
        std::fs::remove_dir_all(other).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
