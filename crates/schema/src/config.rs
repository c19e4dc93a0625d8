//! How every service reads its configuration: `SLUICE_<SERVICE>_<FIELD>` for the fields of its
//! `Config`, plus the settings shared by several services, each one struct read with envy under
//! its own prefix (`SLUICE_<SERVICE>_CLICKHOUSE_<FIELD>` for [`ClickHouseSettings`]). One reader
//! per service ([`ServiceConfig::from_variables`]) serves the service itself, the tests that
//! build its `Config` from variables and the checks of the deployment files.

pub use envy::Error;
use serde::de::DeserializeOwned;

/// A service's `Config`, read from its environment.
pub trait ServiceConfig: Sized {
    /// `SLUICE_<SERVICE>_`.
    const PREFIX: &'static str;

    /// Reads it from `(variable, value)` pairs, as from the environment: variables of other
    /// prefixes are ignored, a missing one takes its default.
    fn from_variables(variables: &[(String, String)]) -> Result<Self, envy::Error>;

    /// Every setting it reads, as the variable's name after [`Self::PREFIX`], lower case
    /// (`topic`, `clickhouse_url`).
    fn names() -> Vec<String>;

    /// Reads it from the process's environment.
    fn from_env() -> Result<Self, envy::Error> {
        let variables: Vec<(String, String)> = std::env::vars().collect();
        Self::from_variables(&variables)
    }
}

/// `T` read from the variables named `<prefix><FIELD>`.
pub fn read<T: DeserializeOwned>(
    prefix: &str,
    variables: &[(String, String)],
) -> Result<T, envy::Error> {
    envy::prefixed(prefix).from_iter(variables.iter().cloned())
}

/// A topic setting's value; unset or empty (as the shipped `config/*.env` files leave it),
/// `default`.
pub fn topic_or(setting: &Option<String>, default: impl FnOnce() -> String) -> String {
    setting
        .clone()
        .filter(|topic| !topic.is_empty())
        .unwrap_or_else(default)
}

/// The names of `T`'s fields (those serde reads), each after `prefix` (`"clickhouse_"`).
pub fn names_of<T: DeserializeOwned>(prefix: &str) -> Vec<String> {
    serde_aux::serde_introspection::serde_introspect::<T>()
        .iter()
        .map(|field| format!("{prefix}{field}"))
        .collect()
}

/// Implements [`ServiceConfig`] for a service's `Config` read under `$prefix`; with
/// `clickhouse: field`, its `field` (`#[serde(skip)]`) is a [`ClickHouseSettings`] read under
/// `<prefix>CLICKHOUSE_`.
#[macro_export]
macro_rules! service_config {
    ($config:ty, $prefix:literal) => {
        impl $crate::config::ServiceConfig for $config {
            const PREFIX: &'static str = $prefix;

            fn from_variables(
                variables: &[(String, String)],
            ) -> Result<$config, $crate::config::Error> {
                $crate::config::read(Self::PREFIX, variables)
            }

            fn names() -> Vec<String> {
                $crate::config::names_of::<$config>("")
            }
        }
    };
    ($config:ty, $prefix:literal, clickhouse: $field:ident) => {
        impl $crate::config::ServiceConfig for $config {
            const PREFIX: &'static str = $prefix;

            fn from_variables(
                variables: &[(String, String)],
            ) -> Result<$config, $crate::config::Error> {
                let mut config: $config = $crate::config::read(Self::PREFIX, variables)?;
                config.$field = $crate::config::ClickHouseSettings::read(Self::PREFIX, variables)?;
                Ok(config)
            }

            fn names() -> Vec<String> {
                let mut names = $crate::config::names_of::<$config>("");
                names.extend($crate::config::ClickHouseSettings::names());
                names
            }
        }
    };
}

#[cfg(feature = "clickhouse")]
pub use clickhouse_settings::ClickHouseSettings;

#[cfg(feature = "clickhouse")]
mod clickhouse_settings {
    use secrecy::{ExposeSecret, SecretString};
    use serde::Deserialize;

    use crate::migrations::cluster::BadClusterName;
    use crate::migrations::{self, Layout, MigrationError};

    /// A service's ClickHouse, read from `SLUICE_<SERVICE>_CLICKHOUSE_<FIELD>`.
    #[derive(Clone, Deserialize)]
    pub struct ClickHouseSettings {
        /// HTTP endpoint. Default `http://127.0.0.1:8123`.
        #[serde(default = "defaults::url")]
        pub url: String,
        /// Database; created with the tables at start-up by the services that write.
        /// Default `sluice`.
        #[serde(default = "defaults::database")]
        pub database: String,
        /// User. Default `default`.
        #[serde(default = "defaults::user")]
        pub user: String,
        /// Password. Default empty.
        #[serde(default = "defaults::password")]
        pub password: SecretString,
        /// The cluster (a `remote_servers` name) the tables are sharded over; unset or empty:
        /// one server. On a cluster the migrations create a replicated `<table>_local` on
        /// every server and a `Distributed` table over them, and every query carries the
        /// cluster's settings (docs/SCALING.md). Default unset.
        #[serde(default)]
        pub cluster: Option<String>,
    }

    impl std::fmt::Debug for ClickHouseSettings {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ClickHouseSettings")
                .field("url", &self.url)
                .field("database", &self.database)
                .field("user", &self.user)
                .field("cluster", &self.cluster)
                .finish_non_exhaustive()
        }
    }

    impl Default for ClickHouseSettings {
        fn default() -> ClickHouseSettings {
            ClickHouseSettings::at(defaults::url())
        }
    }

    impl ClickHouseSettings {
        /// The variables' prefix after the service's: `CLICKHOUSE_`.
        pub const PREFIX: &'static str = "CLICKHOUSE_";

        /// The defaults at `url`.
        pub fn at(url: impl Into<String>) -> ClickHouseSettings {
            ClickHouseSettings {
                url: url.into(),
                database: defaults::database(),
                user: defaults::user(),
                password: defaults::password(),
                cluster: None,
            }
        }

        /// Read under `service_prefix` (`SLUICE_CONSUMER_`) followed by [`Self::PREFIX`].
        pub fn read(
            service_prefix: &str,
            variables: &[(String, String)],
        ) -> Result<ClickHouseSettings, envy::Error> {
            super::read(&format!("{service_prefix}{}", Self::PREFIX), variables)
        }

        /// Its settings' names after the service's prefix (`clickhouse_url`, …).
        pub fn names() -> Vec<String> {
            super::names_of::<ClickHouseSettings>(&Self::PREFIX.to_lowercase())
        }

        /// The layout [`Self::cluster`] names.
        pub fn layout(&self) -> Result<Layout, BadClusterName> {
            Layout::from_setting(self.cluster.as_deref())
        }

        /// A client of the database, with the layout's settings on every query.
        pub fn client(&self) -> Result<clickhouse::Client, BadClusterName> {
            self.configure(clickhouse::Client::default())
        }

        /// [`Self::client`] keeping no connection idle: every statement goes on a connection
        /// opened for it, which no server can have closed unseen. For a statement repeated
        /// after a pooled connection failed (see [`migrations::unpooled`]).
        pub fn unpooled_client(&self) -> Result<clickhouse::Client, BadClusterName> {
            self.configure(migrations::unpooled())
        }

        /// `base` with these settings and the layout's.
        fn configure(
            &self,
            base: clickhouse::Client,
        ) -> Result<clickhouse::Client, BadClusterName> {
            let client = migrations::client_over(
                base,
                &self.url,
                &self.database,
                &self.user,
                self.password.expose_secret(),
            );
            Ok(self.layout()?.configure(client))
        }

        /// [`Self::client`], with the migrations applied: what a service that writes starts with.
        pub async fn connect(&self) -> Result<clickhouse::Client, MigrationError> {
            let layout = self.layout().map_err(MigrationError::BadCluster)?;
            let client = self.client().map_err(MigrationError::BadCluster)?;
            migrations::apply_on(&client, &self.database, &layout).await?;
            Ok(client)
        }
    }

    mod defaults {
        use secrecy::SecretString;

        pub fn url() -> String {
            "http://127.0.0.1:8123".into()
        }
        pub fn database() -> String {
            "sluice".into()
        }
        pub fn user() -> String {
            "default".into()
        }
        pub fn password() -> SecretString {
            SecretString::from(String::new())
        }
    }
}
