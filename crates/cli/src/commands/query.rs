//! `sluice query ENDPOINT [name=value…] [--all]`: a metered GET on the gateway, its rows
//! printed; `--all` follows `next_cursor` to the last page.

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

pub async fn run(
    settings: &Settings,
    args: QueryArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let endpoint = endpoint(&args.endpoint)?;
    let gateway = Gateway::new(settings);
    let mut params: Vec<(String, String)> =
        args.params.into_iter().map(|p| (p.name, p.value)).collect();
    let progress = args.all.then(|| spinner("querying"));
    let mut rows = Rows::new(args.format);
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
}
