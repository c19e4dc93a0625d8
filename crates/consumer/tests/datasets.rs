//! A dataset declared in a file (`datasets/records.toml`), served by the consumer beside game
//! rounds: its records land in its versions table, a later version beside the earlier one, a
//! redelivery once, and what the table cannot hold in the quarantine.

use std::borrow::Cow;

use sluice_schema::dataset::plan::{Cell, Plan, Record};
use sluice_schema::dataset::Spec;
use sluice_testkit::stack::workspace_root;
use sluice_testkit::{clickhouse, kafka, unique};

mod common;

use common::*;

/// The message of a `records` row: id, created_at, country, category, amount.
fn record(plan: &Plan, cells: [&str; 5]) -> Vec<u8> {
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
            record(&plan, [&id, "2024-01-02 03:04:05", "USA", "Books", "10.5"])
        })
        .collect();
    // A later version of record 2 (a corrected re-upload), and two messages the table cannot
    // hold: not of this schema, and cut short.
    messages.push(record(
        &plan,
        ["2", "2024-01-02 03:04:05", "GBR", "Books", "7"],
    ));
    messages.push(b"not a record".to_vec());
    let cut = record(&plan, ["6", "2024-01-02 03:04:05", "USA", "Toys", "1"]);
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

    // Everything delivered again (another group reads the topic from its start): the same
    // versions, so the same rows.
    let again = unique("group");
    let (shutdown, handle) = spawn_consumer(configure(&again)).await;
    wait_for_committed(&format!("{again}.records"), &topic, messages.len() as i64).await;
    shutdown.cancel();
    handle.await.unwrap();
    assert_eq!(clickhouse::query(&latest).await, expected);
}
