//! Plain HTTP access to ClickHouse for test assertions, independent of the code under test.

use crate::stack::Stack;

/// Runs `sql` and returns the body (TabSeparated), trimmed. Panics on an error status.
pub async fn query(sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(&Stack::get().clickhouse_url)
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
