//! The command line, as clap parses it.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use crate::error::EXIT_CODES_HELP;
use crate::output::Format;

/// Upload game-round exports (or files of any dataset) to Sluice, follow them into
/// ClickHouse, query the gateway and manage API keys.
///
/// Settings come from the flags, then the environment (SLUICE_PRODUCER_URL,
/// SLUICE_GATEWAY_URL, SLUICE_UPLOAD_TOKEN, SLUICE_ADMIN_TOKEN, SLUICE_API_KEY: the names
/// `scripts/dev up` writes into target/sluice/stack.env), then the config file
/// (~/.config/sluice/config.toml, or --config: `producer_url`, `gateway_url`,
/// `upload_token`, `admin_token`, `api_key`). Prefer the environment or the file for
/// secrets: a flag shows in `ps`.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Print JSON instead of text (upload, uploads, keys).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the services are and the credentials to use; flags win over the environment, which
/// wins over the config file.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Settings (flag, then environment, then config file)")]
pub struct SettingsArgs {
    /// The producer's base URL [default: http://127.0.0.1:8080].
    #[arg(long, global = true, env = "SLUICE_PRODUCER_URL", value_name = "URL")]
    pub producer_url: Option<String>,
    /// The gateway's base URL [default: http://127.0.0.1:8081].
    #[arg(long, global = true, env = "SLUICE_GATEWAY_URL", value_name = "URL")]
    pub gateway_url: Option<String>,
    /// Bearer token for uploads and `uploads`/`rejects`.
    #[arg(
        long,
        global = true,
        env = "SLUICE_UPLOAD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub upload_token: Option<String>,
    /// The gateway's admin token, for `keys`.
    #[arg(
        long,
        global = true,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// The API key `query` sends as X-API-Key.
    #[arg(
        long,
        global = true,
        env = "SLUICE_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Config file [default: $XDG_CONFIG_HOME/sluice/config.toml or
    /// ~/.config/sluice/config.toml, if it exists].
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload files to the producer (one Kafka transaction each) and print their receipts.
    ///
    /// Game rounds go to `POST /csv_upload`; with --dataset NAME the files are rows of that
    /// dataset (`datasets/NAME.toml`) and go to `POST /datasets/NAME/upload`, and the receipt
    /// names the dataset. A progress bar on stderr shows the bytes sent. The Idempotency-Key
    /// is the file's SHA-256 unless given (the producer scopes it within the dataset), so
    /// running the same command again is answered from the first receipt without sending the
    /// file twice. After the receipt, the upload's reconciliation is polled for up to --wait
    /// seconds to show its rows landing in ClickHouse (game rounds only: for other datasets
    /// the producer does not count them yet, and says `unknown`). Exit code 3 when rows were
    /// rejected; 4 for a dataset the producer does not serve.
    Upload(UploadArgs),
    /// The uploads running now, or one upload's receipt, reconciliation or failure.
    Uploads {
        /// An upload id (from a receipt); without it, the running uploads.
        id: Option<String>,
    },
    /// Every rejected row of an upload (line, column, reason), in line order.
    Rejects(RejectsArgs),
    /// Query the gateway with the API key; prints the rows of the answer.
    ///
    /// ENDPOINT is `aggregated_game_rounds` or `datasets/<name>/<endpoint>`; every
    /// name=value is a query parameter (player_id, game_id, from, to, granularity, sort,
    /// page_size, cursor…; a dataset's endpoint takes its filters, limit and cursor). Each
    /// page costs credits. A dataset's rows are printed in its columns' order, as the
    /// gateway's `GET /datasets` declares them.
    Query(QueryArgs),
    /// Manage API keys through the gateway's admin API (admin token).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print a shell completion script (e.g. `sluice completions bash > ~/.local/share/bash-completion/completions/sluice`).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The files (CSV; gzip or zstd compressed ones are sent as they are).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The dataset the files' rows belong to, as the producer serves it: `game_rounds` (the
    /// default, `POST /csv_upload`) or a `NAME.toml` of its SLUICE_PRODUCER_DATASETS_DIR
    /// (`POST /datasets/NAME/upload`; the gateway's `GET /datasets` lists them).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<DatasetName>,
    /// Compress with zstd on the fly (the producer recognises zstd by its first bytes; the
    /// receipt describes the file inside, so it is the same upload as the plain file).
    #[arg(long)]
    pub zstd: bool,
    /// The Idempotency-Key to send instead of the file's SHA-256 (one file only).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Seconds to wait, after the receipt, for the accepted rows to land in ClickHouse (0:
    /// do not wait; a reconciliation `unknown`, as for datasets other than game_rounds, ends
    /// the wait at once).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct RejectsArgs {
    /// The upload id.
    pub id: String,
    /// Write them into FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Output format [default: csv with --out, else table].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Seconds to wait for every reject to be stored (the consumer stores them shortly after
    /// the upload).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// `aggregated_game_rounds` or `datasets/<name>/<endpoint>`.
    pub endpoint: String,
    /// Query parameters, each `name=value`.
    #[arg(value_name = "NAME=VALUE")]
    pub params: Vec<Param>,
    /// Follow `next_cursor` to the last page (progress on stderr; each page costs credits).
    #[arg(long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A `name=value` query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: String,
}

impl FromStr for Param {
    type Err = String;

    fn from_str(text: &str) -> Result<Param, String> {
        match text.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok(Param {
                name: name.to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!("`{text}`: write parameters as name=value")),
        }
    }
}

/// A dataset's name as specs declare them: lower-case letters, digits and `_`, not starting
/// with a digit (so also one URL path segment as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetName(String);

impl DatasetName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatasetName {
    type Err = String;

    fn from_str(text: &str) -> Result<DatasetName, String> {
        let mut bytes = text.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        if first_ok && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            Ok(DatasetName(text.to_owned()))
        } else {
            Err(format!(
                "`{text}` is not a dataset name: datasets are named in lower-case letters, \
                 digits and `_`, starting with a letter (e.g. records)"
            ))
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// The key's name (1 to 200 characters).
        name: String,
        /// Starting credits.
        #[arg(long)]
        credits: u64,
        /// When the key stops working (RFC 3339, in the future).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// The key's own rate limit, REQUESTS/SECONDS (e.g. 10/1); default: the gateway's.
        #[arg(long, value_name = "REQUESTS/SECONDS")]
        rate_limit: Option<RateLimit>,
    },
    /// Every key, oldest first (revoked ones included).
    List,
    /// One key.
    Show { id: String },
    /// Revoke a key: every secret of it is refused from now on.
    Revoke { id: String },
    /// Give a key a new secret (printed once); the old one works for the grace period.
    Rotate {
        id: String,
        /// Seconds the old secret keeps working [default: the gateway's, 3600].
        #[arg(long, value_name = "SECONDS")]
        grace_seconds: Option<u32>,
    },
    /// Add credits to a key.
    TopUp { id: String, credits: u64 },
    /// Set a key's own rate limit, REQUESTS/SECONDS (e.g. 10/1).
    RateLimit {
        id: String,
        #[arg(value_name = "REQUESTS/SECONDS")]
        limit: RateLimit,
    },
}

/// `REQUESTS/SECONDS`, e.g. `10/1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per_seconds: u32,
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<RateLimit, String> {
        let parse = || {
            let (requests, per_seconds) = text.split_once('/')?;
            Some(RateLimit {
                requests: requests.trim().parse().ok()?,
                per_seconds: per_seconds.trim().trim_end_matches('s').parse().ok()?,
            })
        };
        parse()
            .ok_or_else(|| format!("`{text}`: write a rate limit as REQUESTS/SECONDS, e.g. 10/1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn params_and_rate_limits_parse_or_say_how_to_write_them() {
        assert_eq!(
            "from=2019-10-22".parse::<Param>().unwrap(),
            Param {
                name: "from".into(),
                value: "2019-10-22".into()
            }
        );
        assert_eq!("cursor=a=b".parse::<Param>().unwrap().value, "a=b");
        assert!("from".parse::<Param>().unwrap_err().contains("name=value"));
        assert!("=x".parse::<Param>().is_err());
        assert_eq!(
            "10/1".parse::<RateLimit>().unwrap(),
            RateLimit {
                requests: 10,
                per_seconds: 1
            }
        );
        assert_eq!("5/60s".parse::<RateLimit>().unwrap().per_seconds, 60);
        assert!("10".parse::<RateLimit>().is_err());
    }

    #[test]
    fn dataset_names_are_plain_identifiers() {
        for name in ["records", "game_rounds", "_x1"] {
            assert_eq!(name.parse::<DatasetName>().unwrap().as_str(), name);
        }
        for bad in ["", "Records", "1x", "..", "a/b", "a-b"] {
            let error = bad.parse::<DatasetName>().unwrap_err();
            assert!(error.contains("lower-case"), "{bad}: {error}");
        }
    }
}
