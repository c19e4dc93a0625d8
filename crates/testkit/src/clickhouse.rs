//! Plain HTTP access to ClickHouse for test assertions, independent of the code under test.

use crate::stack::Stack;

/// Runs `sql` as the stack's ClickHouse user and returns the body (TabSeparated), trimmed.
/// Panics on an error status.
pub async fn query(sql: &str) -> String {
    query_at(&Stack::get().clickhouse_url, sql).await
}

/// Runs `sql` on the ClickHouse server at `url` (one of [`crate::cluster`]'s, say) as the
/// stack's ClickHouse user and returns the body, trimmed. Panics on an error status.
pub async fn query_at(url: &str, sql: &str) -> String {
    let stack = Stack::get();
    let response = reqwest::Client::new()
        .post(url)
        .basic_auth(&stack.clickhouse_user, Some(&stack.clickhouse_password))
        .body(sql.to_owned())
        .send()
        .await
        .unwrap_or_else(|e| panic!("ClickHouse unreachable for `{sql}`: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "ClickHouse answered {status} to `{sql}`: {body}"
    );
    body.trim().to_owned()
}

/// Polls `sql` until it returns `expected`, failing after `timeout` with the last answer.
pub async fn wait_for(sql: &str, expected: &str, timeout: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        let answer = query(sql).await;
        if answer == expected {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "`{sql}` still answers {answer}, expected {expected}, after {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
