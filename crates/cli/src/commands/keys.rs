//! `sluice keys …`: the gateway's admin API.

use std::io::Write;

use reqwest::Method;
use serde_json::{json, Value};

use super::segment;
use crate::args::KeysCommand;
use crate::client::Gateway;
use crate::error::{CliError, Outcome};
use crate::output::{key_row, key_summary, write_table, KEY_COLUMNS};
use crate::settings::Settings;

pub async fn run(
    settings: &Settings,
    command: KeysCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let gateway = Gateway::new(settings);
    let key_path = |id: &str| format!("/admin/keys/{}", segment(id));
    let answer = match &command {
        KeysCommand::Create {
            name,
            credits,
            expires_at,
            rate_limit,
        } => {
            let mut body = json!({"name": name, "credits": credits});
            if let Some(expires_at) = expires_at {
                body["expires_at"] = json!(expires_at);
            }
            if let Some(limit) = rate_limit {
                body["rate_limit"] =
                    json!({"requests": limit.requests, "per_seconds": limit.per_seconds});
            }
            gateway
                .admin(Method::POST, "/admin/keys", Some(body))
                .await?
        }
        KeysCommand::List => gateway.admin(Method::GET, "/admin/keys", None).await?,
        KeysCommand::Show { id } => gateway.admin(Method::GET, &key_path(id), None).await?,
        KeysCommand::Revoke { id } => gateway.admin(Method::DELETE, &key_path(id), None).await?,
        KeysCommand::Rotate { id, grace_seconds } => {
            let body = grace_seconds.map(|s| json!({"grace_seconds": s}));
            let path = format!("{}/rotate", key_path(id));
            gateway.admin(Method::POST, &path, body).await?
        }
        KeysCommand::TopUp { id, credits } => {
            let path = format!("{}/credits", key_path(id));
            gateway
                .admin(Method::POST, &path, Some(json!({"add": credits})))
                .await?
        }
        KeysCommand::RateLimit { id, limit } => {
            let path = format!("{}/rate_limit", key_path(id));
            let body = json!({"requests": limit.requests, "per_seconds": limit.per_seconds});
            gateway.admin(Method::PUT, &path, Some(body)).await?
        }
    };
    if json {
        writeln!(out, "{answer}")?;
        return Ok(Outcome::Done);
    }
    match command {
        KeysCommand::Create { .. } => {
            write!(out, "{}", key_summary(&answer))?;
            print_secret(out, &answer)?;
        }
        KeysCommand::List => {
            let keys = answer["keys"].as_array().cloned().unwrap_or_default();
            let rows: Vec<_> = keys.iter().map(key_row).collect();
            let columns: Vec<String> = KEY_COLUMNS.iter().map(|&c| c.to_owned()).collect();
            write_table(out, &columns, &rows)?;
        }
        KeysCommand::Show { .. } | KeysCommand::Revoke { .. } | KeysCommand::RateLimit { .. } => {
            write!(out, "{}", key_summary(&answer))?;
        }
        KeysCommand::Rotate { .. } => {
            writeln!(
                out,
                "The previous secret works until {}.",
                answer["previous_key_expires_at"].as_str().unwrap_or("?")
            )?;
            print_secret(out, &answer)?;
        }
        KeysCommand::TopUp { .. } => {
            writeln!(
                out,
                "Key {} now has {} credits.",
                answer["id"].as_str().unwrap_or("?"),
                answer["credits"]
            )?;
        }
    }
    Ok(Outcome::Done)
}

/// The new secret, last and on its own line, with how to use it (this is the only time the
/// gateway shows it).
fn print_secret(out: &mut dyn Write, answer: &Value) -> std::io::Result<()> {
    writeln!(
        out,
        "\nThe secret, shown this once (send it as X-API-Key, or set SLUICE_API_KEY):\n{}",
        answer["key"].as_str().unwrap_or("?")
    )
}
