//! `GET /aggregated_game_rounds`: exact sums, hostile filters, keyset pages and their cursors.

use crate::helpers::*;

#[tokio::test]
async fn hourly_and_daily_sums_are_exact_decimals() {
    let gateway = spawn_gateway(|_| {}).await;
    let key = gateway.create_key(10).await;
    let response = gateway
        .query(&key, &[("player_id", PLAYER), ("game_id", "7")])
        .await;
    let body = answer(response, 200).await;
    assert_eq!(
        body["data"],
        serde_json::json!([{
            "hour": "2019-10-22T08:00:00Z", "player_id": PLAYER, "game_id": 7,
            "real_amount_bet": "3.5", "bonus_amount_bet": "0.5",
            "real_amount_win": "10", "bonus_amount_win": "0",
            "rounds": 2, "ggr": "-6"
        }])
    );

    let days: serde_json::Value = gateway
        .query(
            &key,
            &[
                ("granularity", "day"),
                ("from", "2019-10-22"),
                ("to", "2019-10-23"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let rounds: BTreeMap<u64, u64> = days["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["game_id"].as_u64().unwrap(),
                b["rounds"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rounds, BTreeMap::from([(7, 2), (8, 1)]));
    assert_eq!(days["data"][0]["day"], "2019-10-22T00:00:00Z");

    // Half-open range: `to` excludes 09:05:00 when it is exactly 09:05:00.
    let before: serde_json::Value = gateway
        .query(
            &key,
            &[
                ("from", "2019-10-22T08:00:00Z"),
                ("to", "2019-10-22T09:05:00Z"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn hostile_or_malformed_filters_are_400_and_cost_nothing() {
    let gateway = spawn_gateway(|_| {}).await;
    let key = gateway.create_key(2).await;
    for filters in [
        [("player_id", "' OR 1=1 --")],
        [("player_id", "9ece8c40'); DROP TABLE game_rounds; --")],
        [("player_id", "ÿçé😀")],
        [("game_id", "1 OR 1=1")],
        [("game_id", "184467440737095516160")],
        [("from", "2019-02-30")],
        [("to", "tomorrow")],
        [("granularity", "week")],
        [("limit", "100000000")],
    ] {
        let response = gateway.query(&key, &filters).await;
        assert_eq!(response.status(), 400, "{filters:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(gateway.credits_after_one_more_query(&key).await, 1);
}

#[tokio::test]
async fn paging_with_a_small_page_size_returns_every_bucket_once_in_order_with_the_unpaged_sums() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    let key = gateway.key_limited("pager", 1000, 1000, 1).await.secret;
    let key = key.as_str();

    let unpaged = gateway.page(key, &[("page_size", "10000")]).await;
    assert_eq!(unpaged["next_cursor"], serde_json::Value::Null);
    assert_eq!(unpaged["has_more"], false);
    let all = unpaged["data"].as_array().unwrap().clone();
    let rounds: u64 = all.iter().map(|b| b["rounds"].as_u64().unwrap()).sum();
    assert_eq!(rounds, 403, "the fixture's 3 rounds and the 400 inserted");
    assert!(all.len() > 100, "{} buckets", all.len());
    let keys: Vec<_> = all.iter().map(sort_key).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "strictly ordered");

    let (paged, pages) = gateway.every_page(key, &[], "7").await;
    assert_eq!(pages, all.len().div_ceil(7));
    assert_eq!(
        paged, all,
        "every bucket once, in order, with the same sums"
    );

    // Filters and daily buckets page the same way; a page size of one crosses every boundary.
    let filters = [
        ("granularity", "day"),
        ("from", "2019-10-22"),
        ("to", "2019-10-24"),
        ("game_id", "1"),
    ];
    let mut unpaged_filters = filters.to_vec();
    unpaged_filters.push(("limit", "10000"));
    let daily = gateway.page(key, &unpaged_filters).await["data"].clone();
    let (paged_daily, _) = gateway.every_page(key, &filters, "1").await;
    assert!(daily.as_array().unwrap().len() >= 3);
    assert_eq!(serde_json::Value::Array(paged_daily), daily);

    // The page size may change between pages; only the filters are bound to the cursor.
    let first = gateway.page(key, &[("page_size", "5")]).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = gateway
        .page(key, &[("page_size", "10000"), ("cursor", cursor)])
        .await;
    let mut joined = first["data"].as_array().unwrap().clone();
    joined.extend(rest["data"].as_array().unwrap().iter().cloned());
    assert_eq!(joined, all);
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_tampered_cursor_or_one_reused_with_other_filters_is_400_and_costs_nothing() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    let Key { secret, id, .. } = gateway.key_limited("tamperer", 100, 1000, 1).await;
    let key = secret.as_str();
    let filters = [("from", "2019-10-23"), ("granularity", "hour")];
    let mut first_page = filters.to_vec();
    first_page.push(("page_size", "2"));
    let first = gateway.page(key, &first_page).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(gateway.key_info(&id).await["credits"], 99);

    let mut tampered = Vec::new();
    for index in [0, cursor.len() / 2, cursor.len() - 1] {
        let mut chars: Vec<char> = cursor.chars().collect();
        chars[index] = if chars[index] == 'A' { 'B' } else { 'A' };
        tampered.push(chars.into_iter().collect::<String>());
    }
    tampered.push(cursor[..cursor.len() - 4].to_owned());
    tampered.push(format!("{cursor}AAAA"));
    tampered.push("not a cursor".to_owned());
    for bad in &tampered {
        let mut params = filters.to_vec();
        params.push(("cursor", bad));
        let response = gateway.query(key, &params).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
    }

    for other in [
        vec![("from", "2019-10-22"), ("granularity", "hour")],
        vec![("from", "2019-10-23"), ("granularity", "day")],
        vec![("granularity", "hour")],
        vec![("from", "2019-10-23"), ("player_id", PLAYER)],
        vec![("from", "2019-10-23"), ("game_id", "1")],
        vec![("from", "2019-10-23"), ("to", "2019-10-24")],
    ] {
        let mut params = other.clone();
        params.push(("cursor", &cursor));
        let response = gateway.query(key, &params).await;
        assert_eq!(response.status(), 400, "{other:?}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("other filters"),
            "{problem}"
        );
    }
    assert_eq!(
        gateway.key_info(&id).await["credits"],
        99,
        "no refused cursor was charged"
    );

    // The genuine cursor with its own filters still works; a gateway with another secret
    // refuses it.
    let mut next = filters.to_vec();
    next.push(("cursor", &cursor));
    let second = gateway.page(key, &next).await;
    assert_ne!(second["data"][0], first["data"][0]);
    assert_eq!(gateway.key_info(&id).await["credits"], 98);
    let stranger = spawn_gateway(|config| {
        config.cursor_secret = Some("another-cursor-secret-of-thirty-two-b".to_owned().into());
    })
    .await;
    let stranger_key = stranger.create_key(5).await;
    assert_eq!(stranger.query(&stranger_key, &next).await.status(), 400);
}

#[tokio::test]
async fn sorting_newest_first_pages_through_the_same_buckets_in_reverse() {
    let gateway = spawn_gateway(|_| {}).await;
    insert_many_rounds(&gateway.database).await;
    let key = gateway.key_limited("sorter", 1000, 1000, 1).await.secret;
    let key = key.as_str();

    let ascending = gateway.page(key, &[("page_size", "10000")]).await["data"]
        .as_array()
        .unwrap()
        .clone();
    let (descending, _) = gateway.every_page(key, &[("sort", "desc")], "6").await;
    let mut reversed = descending.clone();
    reversed.reverse();
    assert_eq!(reversed, ascending, "the same buckets, newest first");
    let keys: Vec<_> = descending.iter().map(sort_key).collect();
    assert!(keys.windows(2).all(|w| w[0] > w[1]), "strictly descending");

    // A cursor is bound to its order too.
    let first = gateway.page(key, &[("page_size", "5")]).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let response = gateway
        .query(key, &[("sort", "desc"), ("cursor", cursor)])
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        gateway.query(key, &[("sort", "sideways")]).await.status(),
        400
    );
}
