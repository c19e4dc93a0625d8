//! Settings: flags, then the environment (both through clap), then the config file, then the
//! defaults. Secrets stay [`SecretString`]s: no message or `Debug` output shows them.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::args::SettingsArgs;
use crate::error::CliError;

pub const DEFAULT_PRODUCER_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:8081";

/// What every command works with.
#[derive(Debug)]
pub struct Settings {
    pub producer_url: String,
    pub gateway_url: String,
    pub upload_token: Option<SecretString>,
    pub admin_token: Option<SecretString>,
    pub api_key: Option<SecretString>,
}

/// `config.toml`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub producer_url: Option<String>,
    pub gateway_url: Option<String>,
    pub upload_token: Option<String>,
    pub admin_token: Option<String>,
    pub api_key: Option<String>,
}

impl Settings {
    /// Flags and environment (already merged by clap) over the config file over defaults.
    pub fn resolve(args: SettingsArgs) -> Result<Settings, CliError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => match default_path() {
                Some(path) if path.exists() => read_file(&path)?,
                _ => FileSettings::default(),
            },
        };
        let settings = Settings::merge(args, file);
        for (variable, url) in [
            ("SLUICE_PRODUCER_URL", &settings.producer_url),
            ("SLUICE_GATEWAY_URL", &settings.gateway_url),
        ] {
            if !url.starts_with("http://") {
                return Err(CliError::Settings(format!(
                    "{variable} (or its flag or config entry) is `{url}`: this build of sluice \
                     speaks plain http:// only (no TLS); write it as http://host:port"
                )));
            }
        }
        Ok(settings)
    }

    fn merge(args: SettingsArgs, file: FileSettings) -> Settings {
        let pick = |flag: Option<String>, file: Option<String>| {
            flag.filter(|v| !v.is_empty())
                .or(file.filter(|v| !v.is_empty()))
        };
        let url = |flag, file, default: &str| {
            pick(flag, file)
                .unwrap_or_else(|| default.to_owned())
                .trim_end_matches('/')
                .to_owned()
        };
        let secret = |flag, file| pick(flag, file).map(SecretString::from);
        Settings {
            producer_url: url(args.producer_url, file.producer_url, DEFAULT_PRODUCER_URL),
            gateway_url: url(args.gateway_url, file.gateway_url, DEFAULT_GATEWAY_URL),
            upload_token: secret(args.upload_token, file.upload_token),
            admin_token: secret(args.admin_token, file.admin_token),
            api_key: secret(args.api_key, file.api_key),
        }
    }
}

/// `$XDG_CONFIG_HOME/sluice/config.toml`, else `~/.config/sluice/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("sluice").join("config.toml"))
}

fn read_file(path: &Path) -> Result<FileSettings, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })?;
    let settings: FileSettings = toml::from_str(&text).map_err(|error| {
        // toml's message quotes the offending line, which may hold a secret: only its place.
        let place = error
            .span()
            .map(|span| {
                let line = text[..span.start].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        CliError::Settings(format!(
            "{}: not a valid config file{place}; it may hold producer_url, gateway_url, \
             upload_token, admin_token and api_key, each a string",
            path.display()
        ))
    })?;
    let holds_secret = settings.upload_token.is_some()
        || settings.admin_token.is_some()
        || settings.api_key.is_some();
    if holds_secret && readable_by_others(path) {
        eprintln!(
            "warning: {} holds secrets and other users can read it: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    Ok(settings)
}

fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn flags_and_environment_win_over_the_file_which_wins_over_defaults() {
        let args = SettingsArgs {
            gateway_url: Some("http://gateway:1/".into()),
            admin_token: Some("from-env".into()),
            api_key: Some(String::new()),
            ..SettingsArgs::default()
        };
        let file = FileSettings {
            gateway_url: Some("http://file:2".into()),
            admin_token: Some("from-file".into()),
            api_key: Some("key-from-file".into()),
            upload_token: Some("upload-from-file".into()),
            ..FileSettings::default()
        };
        let settings = Settings::merge(args, file);
        assert_eq!(settings.gateway_url, "http://gateway:1");
        assert_eq!(settings.producer_url, DEFAULT_PRODUCER_URL);
        assert_eq!(settings.admin_token.unwrap().expose_secret(), "from-env");
        // An empty variable counts as unset.
        assert_eq!(settings.api_key.unwrap().expose_secret(), "key-from-file");
        assert_eq!(
            settings.upload_token.unwrap().expose_secret(),
            "upload-from-file"
        );
    }

    #[test]
    fn a_bad_config_file_is_refused_without_quoting_its_secrets() {
        let dir = std::env::temp_dir().join(format!("sluice-cli-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "admin_token = \"hunter2\"\napi_key = 7 # hunter3\n").unwrap();
        let error = read_file(&path).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains("hunter"), "{error}");
        std::fs::write(&path, "producer_url = \"http://p:1\"\n").unwrap();
        assert_eq!(
            read_file(&path).unwrap().producer_url.as_deref(),
            Some("http://p:1")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_never_show_secrets_in_debug_output() {
        let settings = Settings::merge(
            SettingsArgs {
                admin_token: Some("very-secret-admin".into()),
                ..SettingsArgs::default()
            },
            FileSettings::default(),
        );
        assert!(!format!("{settings:?}").contains("very-secret-admin"));
    }
}
