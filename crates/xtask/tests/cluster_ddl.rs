//! `cargo xtask cluster-ddl`: the statements of the sharded layout, the datasets' included.

use std::process::Command;

#[test]
fn cluster_ddl_prints_the_migrations_then_every_datasets_tables_once() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["cluster-ddl", "--database", "db", "--cluster", "c"])
        .output()
        .expect("xtask runs");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    let at = |table: &str| {
        let head = format!("CREATE TABLE IF NOT EXISTS db.{table}_local ON CLUSTER c");
        assert_eq!(printed.matches(&head).count(), 1, "{head} in:\n{printed}");
        printed.find(&head).unwrap()
    };
    let rounds = at("round_versions");
    for dataset in ["amazon_reviews", "events", "records"] {
        assert!(at(&format!("{dataset}_versions")) > rounds, "{dataset}");
        assert!(
            printed.contains(&format!(
                "CREATE TABLE IF NOT EXISTS db.{dataset}_versions ON CLUSTER c"
            )),
            "{dataset}'s Distributed table"
        );
    }
}
