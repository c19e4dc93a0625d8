//! `sluice query ENDPOINT [name=value…] [--all]`: a metered GET on the gateway, its rows
//! printed; `--all` follows `next_cursor` to the last page. A dataset's rows come in its
//! columns' order, as `GET /datasets` declares them.

use std::io::Write;

use serde::Deserialize;

use super::spinner;
use crate::args::QueryArgs;
use crate::client::Gateway;
use crate::error::{CliError, Outcome};
use crate::output::{Record, Rows};
use crate::settings::Settings;

/// A page as the gateway's paged endpoints answer it.
#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<Record>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// `aggregated_game_rounds`, or `datasets/<name>/<endpoint>` (names of letters, digits, `_`,
/// `-` and `.`); a leading `/` is dropped.
pub fn endpoint(text: &str) -> Result<String, CliError> {
    let text = text.trim_start_matches('/');
    let name_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    let segments: Vec<&str> = text.split('/').collect();
    match segments.as_slice() {
        ["aggregated_game_rounds"] => Ok(text.to_owned()),
        ["datasets", name, endpoint] if name_ok(name) && name_ok(endpoint) => Ok(text.to_owned()),
        _ => Err(CliError::Usage(format!(
            "`{text}` is not an endpoint: use aggregated_game_rounds or datasets/<name>/<endpoint>"
        ))),
    }
}

/// The columns of a dataset's listing of rows (`kind = "rows"`), in its spec's order, as the
/// gateway's `GET /datasets` declares them: the order its pages write them in too, known
/// before the first page (an empty answer still gets its header, and a gateway from before
/// objects kept their order still prints in spec order). None for anything else, or when the
/// gateway does not say (then the first row's order is used).
async fn declared_columns(gateway: &Gateway, endpoint: &str) -> Vec<String> {
    let ["datasets", name, endpoint] = endpoint.split('/').collect::<Vec<_>>()[..] else {
        return Vec::new();
    };
    let Ok(list) = gateway.datasets().await else {
        return Vec::new();
    };
    rows_columns(&list, name, endpoint)
}

/// In `GET /datasets`' answer `list`: the columns of dataset `name`, if `endpoint` is one of
/// its listings of rows.
fn rows_columns(list: &serde_json::Value, name: &str, endpoint: &str) -> Vec<String> {
    let Some(dataset) = list["datasets"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == name))
    else {
        return Vec::new();
    };
    let is_rows = dataset["endpoints"].as_array().is_some_and(|all| {
        all.iter()
            .any(|e| e["name"] == endpoint && e["kind"] == "rows")
    });
    if !is_rows {
        return Vec::new();
    }
    dataset["columns"]
        .as_array()
        .map(|columns| {
            columns
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn run(
    settings: &Settings,
    args: QueryArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let endpoint = endpoint(&args.endpoint)?;
    let gateway = Gateway::new(settings);
    let mut params: Vec<(String, String)> =
        args.params.into_iter().map(|p| (p.name, p.value)).collect();
    let columns = declared_columns(&gateway, &endpoint).await;
    let progress = args.all.then(|| spinner("querying"));
    let mut rows = Rows::with_columns(args.format, columns);
    let mut pages = 0u64;
    let mut credits = None;
    loop {
        let answer = gateway.query(&endpoint, &params).await?;
        pages += 1;
        if let Some(left) = answer.header("X-Credits-Remaining") {
            credits = Some(left.to_owned());
        }
        let Ok(page) = serde_json::from_str::<Page>(&answer.text) else {
            // Not a page of rows: shown as it came.
            if let Some(progress) = &progress {
                progress.finish_and_clear();
            }
            writeln!(out, "{}", answer.text.trim_end())?;
            return Ok(Outcome::Done);
        };
        rows.push(out, page.data)?;
        if let Some(progress) = &progress {
            progress.set_message(format!(
                "{pages} pages, {} rows, {} credits left",
                rows.count,
                credits.as_deref().unwrap_or("?")
            ));
        }
        match page.next_cursor {
            Some(cursor) if args.all => {
                params.retain(|(name, _)| name != "cursor");
                params.push(("cursor".into(), cursor));
            }
            Some(cursor) => {
                eprintln!(
                    "More rows follow: add --all (each page costs credits), or cursor={cursor}"
                );
                break;
            }
            None => break,
        }
    }
    if let Some(progress) = progress {
        progress.finish_and_clear();
        eprintln!(
            "{} rows in {pages} pages; {} credits left",
            rows.count,
            credits.as_deref().unwrap_or("?")
        );
    }
    rows.finish(out)?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_the_rounds_or_a_dataset_endpoint() {
        assert_eq!(
            endpoint("aggregated_game_rounds").unwrap(),
            "aggregated_game_rounds"
        );
        assert_eq!(
            endpoint("/datasets/rounds/daily_ggr").unwrap(),
            "datasets/rounds/daily_ggr"
        );
        for bad in [
            "admin/keys",
            "datasets/x",
            "datasets/../admin",
            "datasets/a/b/c",
            "",
        ] {
            assert!(matches!(endpoint(bad), Err(CliError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn a_datasets_rows_take_its_declared_columns_and_nothing_else_does() {
        let list = serde_json::json!({"datasets": [
            {"name": "game_rounds", "columns": [{"name": "user_id"}], "endpoints": []},
            {"name": "records",
             "columns": [{"name": "id"}, {"name": "created_at"}, {"name": "amount"}],
             "endpoints": [{"name": "rows", "kind": "rows"}, {"name": "daily", "kind": "rollup"}]},
        ]});
        assert_eq!(
            rows_columns(&list, "records", "rows"),
            ["id", "created_at", "amount"]
        );
        assert!(rows_columns(&list, "records", "daily").is_empty());
        assert!(rows_columns(&list, "records", "nope").is_empty());
        assert!(rows_columns(&list, "nope", "rows").is_empty());
        assert!(rows_columns(&serde_json::json!({}), "records", "rows").is_empty());
    }
}
