//! Answers read from the rollups at their published versions, from raw rows for the hours
//! not processed yet, and the same either way.

use crate::helpers::*;

#[tokio::test]
async fn answers_are_the_same_from_raw_rows_and_from_the_rollup_and_a_moved_round_counts_once() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    // Round 5000's later version moved it from September into October: it counts once, there.
    sluice_testkit::rounds::insert(
        &gateway.database,
        &format!(
            "VALUES ('2019-09-30 23:10:00', 5000, '{PLAYER}', 9, 100, NULL, 0, 0, 'g', 'p', 1), \
             ('2019-10-23 03:10:00', 5000, '{PLAYER}', 9, 7, NULL, 0, 0, 'g', 'p', 2)"
        ),
    )
    .await;
    let key = gateway
        .key_limited("rollup", 100000, 100000, 1)
        .await
        .secret;
    let key = key.as_str();
    let shapes: [&[(&str, &str)]; 7] = [
        &[],
        &[("player_id", PLAYER)],
        &[("game_id", "1")],
        &[
            ("from", "2019-10-23T02:30:00Z"),
            ("to", "2019-10-23T07:45:10Z"),
        ],
        &[("granularity", "day")],
        &[
            ("sort", "desc"),
            ("granularity", "day"),
            ("from", "2019-09-30"),
        ],
        &[
            ("sort", "desc"),
            ("from", "2019-10-23T03:10:00Z"),
            ("game_id", "9"),
        ],
    ];
    let mut before = Vec::new();
    for shape in shapes {
        before.push(gateway.every_page(key, shape, "9").await.0);
    }
    let rounds: u64 = before[0]
        .iter()
        .map(|b| b["rounds"].as_u64().unwrap())
        .sum();
    assert_eq!(rounds, 3 + 400 + 1, "every round once");
    let moved: Vec<_> = before[0].iter().filter(|b| b["game_id"] == 9).collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        (
            moved[0]["hour"].as_str(),
            moved[0]["real_amount_bet"].as_str()
        ),
        (Some("2019-10-23T03:00:00Z"), Some("7"))
    );

    // The hours processed, their days not yet; then the days too.
    sluice_testkit::rounds::process_every_dirty_hour(&gateway.database).await;
    for (shape, before) in shapes.iter().zip(&before) {
        let (after, _) = gateway.every_page(key, shape, "9").await;
        assert_eq!(&after, before, "{shape:?}");
    }
    sluice_testkit::rounds::process_every_dirty_day(&gateway.database).await;
    for table in ["rollup_hourly", "rollup_daily"] {
        let sql = format!("SELECT count() FROM {}.{table}", gateway.database);
        assert_ne!(
            clickhouse::query(&sql).await,
            "0",
            "answered from {table} now"
        );
    }
    for (shape, before) in shapes.iter().zip(&before) {
        let (after, _) = gateway.every_page(key, shape, "9").await;
        assert_eq!(&after, before, "{shape:?}");
    }

    // A third version moves it to 05:00; as the consumer does, its old and new hours (only
    // those) are marked: they are read from raw rows, every other hour from the rollup.
    clickhouse::query(&format!(
        "INSERT INTO {}.round_versions ({}) VALUES \
         ('2019-10-23 05:10:00', 5000, '{PLAYER}', 9, 3, NULL, 0, 0, 'g', 'p', 3)",
        gateway.database,
        sluice_testkit::rounds::COLUMNS
    ))
    .await;
    let hour = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp() as u32
    };
    let mut redis = sluice_testkit::rounds::redis_connection().await;
    sluice_rollup::dirty::DirtyHours::new(&gateway.database)
        .end(
            &mut redis,
            "test",
            &[hour("2019-10-23T03:00:00Z"), hour("2019-10-23T05:00:00Z")],
        )
        .await
        .unwrap();
    let check = |buckets: &[serde_json::Value]| {
        let rounds: u64 = buckets.iter().map(|b| b["rounds"].as_u64().unwrap()).sum();
        assert_eq!(rounds, 404, "every round once");
        let moved: Vec<_> = buckets.iter().filter(|b| b["game_id"] == 9).collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(
            (
                moved[0]["hour"].as_str(),
                moved[0]["real_amount_bet"].as_str()
            ),
            (Some("2019-10-23T05:00:00Z"), Some("3"))
        );
    };
    // Per day: the round's day keeps it, with its new bet, whether the day's hours are dirty
    // (its daily rollup is stale), processed while the day is not, or all processed.
    let check_days = |buckets: &[serde_json::Value]| {
        let moved: Vec<_> = buckets.iter().filter(|b| b["game_id"] == 9).collect();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(
            (
                moved[0]["day"].as_str(),
                moved[0]["real_amount_bet"].as_str()
            ),
            (Some("2019-10-23T00:00:00Z"), Some("3"))
        );
    };
    let days = [("granularity", "day")];
    let (mixed, _) = gateway.every_page(key, &[], "9").await;
    check(&mixed);
    let (mixed_days, _) = gateway.every_page(key, &days, "9").await;
    check_days(&mixed_days);
    sluice_testkit::rounds::process_every_dirty_hour(&gateway.database).await;
    let (processed, _) = gateway.every_page(key, &[], "9").await;
    assert_eq!(processed, mixed);
    assert_eq!(gateway.every_page(key, &days, "9").await.0, mixed_days);
    sluice_testkit::rounds::process_every_dirty_day(&gateway.database).await;
    assert_eq!(gateway.every_page(key, &days, "9").await.0, mixed_days);
    // Nothing changed while a page was read: every page was right the first time (a page
    // that took a dirty hour or day from a rollup would have been read again).
    let repeated = gateway.counter("sluice_gateway_reads_repeated_total").await;
    assert_eq!(repeated, 0);
}
