//! Typed settings: defaults, then a TOML file, then `CRAMP_CDS_*` environment
//! variables (sections separated by `__`, e.g. `CRAMP_CDS_SERVER__BIND`).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::AuthSettings;
use crate::fhir::FhirClientSettings;
use crate::knowledge::KnowledgeSource;
use crate::store::StoreSettings;
use crate::store::history::SuppressionSettings;

/// All settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// Where the knowledge comes from.
    pub knowledge: KnowledgeSettings,
    /// Access to the EHR's FHIR server.
    pub fhir: FhirClientSettings,
    /// Logging.
    pub log: LogSettings,
    /// Authentication of CDS clients.
    pub auth: AuthSettings,
    /// The database.
    pub store: StoreSettings,
    /// Override-based suppression.
    pub suppression: SuppressionSettings,
    /// Administration endpoints.
    pub admin: AdminSettings,
}

/// Administration settings (`[admin]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token for `GET /admin/report`, at least 32 bytes; the endpoint is off when unset
    /// or empty.
    pub token: Option<String>,
}

/// HTTP server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// Largest accepted request body in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body once its headers are in, in milliseconds
    /// (a body still incomplete then gets 408).
    pub body_timeout_ms: u64,
    /// Time allowed to receive a request's headers, in milliseconds (actix-web's
    /// `client_request_timeout`; slower clients get 408).
    pub header_timeout_ms: u64,
    /// Time allowed for a connection's shutdown, in milliseconds (actix-web's
    /// `client_disconnect_timeout`).
    pub disconnect_timeout_ms: u64,
    /// Time allowed to answer a hook invocation, from its first byte to its cards, in
    /// milliseconds (slower ones get 503).
    pub hook_deadline_ms: u64,
    /// Worker threads; the number of cores when unset.
    pub workers: Option<usize>,
    /// Origins allowed by CORS; `["*"]` allows any.
    pub allowed_origins: Vec<String>,
    /// The URL EHRs and browsers reach the service at (behind a proxy, the proxy's URL);
    /// `http://{bind}` when unset.
    pub public_base_url: Option<String>,
}

impl ServerSettings {
    /// The public base URL, without a trailing slash.
    pub fn public_base_url(&self) -> String {
        self.public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
            .trim_end_matches('/')
            .to_owned()
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".to_owned(),
            max_body_bytes: 10 * 1024 * 1024,
            body_timeout_ms: 10_000,
            header_timeout_ms: 5_000,
            disconnect_timeout_ms: 1_000,
            hook_deadline_ms: 30_000,
            workers: None,
            allowed_origins: vec!["*".to_owned()],
            public_base_url: None,
        }
    }
}

/// Knowledge settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeSettings {
    /// A directory laid out like `cds-hooks/`; the built-in knowledge when unset.
    pub dir: Option<PathBuf>,
}

impl KnowledgeSettings {
    /// The source these settings name.
    pub fn source(&self) -> KnowledgeSource {
        match &self.dir {
            Some(dir) => KnowledgeSource::Directory(dir.clone()),
            None => KnowledgeSource::BuiltIn,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `cramp_cds=debug`; `RUST_LOG` wins when set.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads defaults, then `file` (which must exist when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "the file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment
            .merge(
                Env::prefixed("CRAMP_CDS_")
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                    .split("__"),
            )
            .extract()
            .map_err(|e| ConfigError(e.to_string()))
    }
}
