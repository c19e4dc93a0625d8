//! The Grafana dashboard, `deploy/grafana/dashboards/sluice.json`: the PromQL of its panels and
//! the metric names they query, for tests that check them against the code and a live scrape.

use crate::stack::workspace_root;

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct Query {
    /// The panel's title.
    pub panel: String,
    /// Its PromQL expression.
    pub expr: String,
}

/// Every query of every panel, in order.
///
/// # Panics
/// When the file is missing or not a dashboard.
pub fn queries() -> Vec<Query> {
    let path = workspace_root().join("deploy/grafana/dashboards/sluice.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("a JSON dashboard");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(Query {
                panel: title.to_owned(),
                expr: target["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    queries
}

/// The metric names (`sluice_…`) in a PromQL expression as written, histogram series suffixes
/// (`_bucket`, `_sum`, `_count`) included.
pub fn metric_names(expr: &str) -> Vec<String> {
    expr.split("sluice_")
        .skip(1)
        .map(|piece| {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            format!("sluice_{name}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_read_as_written() {
        assert_eq!(
            metric_names(
                "histogram_quantile(0.99, sum(rate(sluice_consumer_insert_seconds_bucket[5m])) \
                 by (le)) / sluice_x_total{outcome=\"ok\"}"
            ),
            ["sluice_consumer_insert_seconds_bucket", "sluice_x_total"]
        );
    }
}
