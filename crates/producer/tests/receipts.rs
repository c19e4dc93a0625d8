//! The receipt store against a real Redis: what `GET /uploads` lists.

use sluice_producer::receipts::ReceiptStore;
use sluice_testkit::{unique, Stack};

#[tokio::test]
async fn an_upload_whose_producer_stopped_reporting_drops_out_of_the_running_list() {
    let redis_url = &Stack::get().redis_url;
    let prefix = format!("{}:", unique("receipts"));
    let store = ReceiptStore::new(redis_url, &prefix).unwrap();
    let state = |id: &str| serde_json::json!({"upload_id": id, "status": "in_progress"});
    store
        .report_progress("alive", 2, &state("alive"))
        .await
        .unwrap();
    store
        .report_progress("dead", 1, &state("dead"))
        .await
        .unwrap();
    let ids = |list: Vec<serde_json::Value>| -> Vec<String> {
        list.iter()
            .map(|s| s["upload_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(store.in_progress().await.unwrap()), ["dead", "alive"]);

    // The dead producer's last report expires (as after PROGRESS_TTL_SECONDS).
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}upload:progress:dead"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(ids(store.in_progress().await.unwrap()), ["alive"]);
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}uploads:in_progress"))
        .arg(0)
        .arg(-1)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(members, ["alive"], "the dead one left the set too");

    // An upload that ended leaves the list; a failed one stays readable.
    let failed = serde_json::json!({"upload_id": "alive", "status": "failed"});
    store.end_progress("alive", Some(&failed)).await.unwrap();
    assert!(store.in_progress().await.unwrap().is_empty());
    assert_eq!(store.progress("alive").await.unwrap(), Some(failed));
}
