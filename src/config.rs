//! Typed settings: defaults, then a TOML file, then `CRAMP_CDS_*` environment
//! variables (sections separated by `__`, e.g. `CRAMP_CDS_SERVER__BIND`).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::AuthSettings;
use crate::fhir::FhirClientSettings;
use crate::knowledge::KnowledgeSource;
use crate::store::StoreSettings;
use crate::store::history::SuppressionSettings;
pub use crate::telemetry::{LogFormat, LogSettings};

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
    /// or empty. A secret: its `Debug` is redacted and it is never serialised.
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
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
    /// After SIGTERM, how long `/ready` answers 503 while requests are still answered, in
    /// milliseconds, so a load balancer stops sending before the server stops accepting.
    pub shutdown_delay_ms: u64,
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
    /// The public base URL, without a trailing slash: `server.public_base_url`, or
    /// `http://{bind}` when it is unset. It must be an absolute `http` or `https` URL with a
    /// host and without a query or fragment (a token's `aud` and every card link are built by
    /// appending a path to it).
    pub fn public_base_url(&self) -> Result<String, PublicBaseUrlError> {
        let text = self
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind));
        let url = url::Url::parse(&text).map_err(|source| PublicBaseUrlError::NotAUrl {
            url: text.clone(),
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PublicBaseUrlError::Scheme {
                scheme: url.scheme().to_owned(),
                url: text,
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(PublicBaseUrlError::QueryOrFragment(text));
        }
        Ok(text.trim_end_matches('/').to_owned())
    }
}

/// A `server.public_base_url` that cannot be the base of the service's URLs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublicBaseUrlError {
    /// It does not parse as an absolute URL (an `http` or `https` URL without a host does not).
    #[error("server.public_base_url '{url}' is not an absolute URL: {source}")]
    NotAUrl {
        /// The value.
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// Its scheme is neither `http` nor `https`.
    #[error("server.public_base_url '{url}' has scheme '{scheme}'; use http or https")]
    Scheme {
        /// The value.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// It has a query or a fragment, which the paths appended to it would end up inside.
    #[error("server.public_base_url '{0}' has a query or fragment; give the base URL only")]
    QueryOrFragment(String),
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".to_owned(),
            max_body_bytes: 10 * 1024 * 1024,
            body_timeout_ms: 10_000,
            header_timeout_ms: 5_000,
            disconnect_timeout_ms: 1_000,
            shutdown_delay_ms: 5_000,
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

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file named does not exist.
    #[error("configuration: the file {} does not exist", .0.display())]
    FileMissing(PathBuf),
    /// The file or the environment holds a value the settings cannot take (figment names the
    /// key and where it came from).
    #[error("configuration: {0}")]
    Invalid(#[source] Box<figment::Error>),
}

impl Settings {
    /// Loads defaults, then `file` (which must exist when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::FileMissing(path.to_owned()));
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
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_url(value: &str) -> Result<String, PublicBaseUrlError> {
        ServerSettings {
            public_base_url: Some(value.to_owned()),
            ..ServerSettings::default()
        }
        .public_base_url()
    }

    #[test]
    fn the_public_base_url_is_an_http_url_with_a_host_and_loses_its_trailing_slash() {
        assert_eq!(
            base_url("https://cds.example/cds/").unwrap(),
            "https://cds.example/cds"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            ServerSettings::default().public_base_url().unwrap(),
            "http://127.0.0.1:8080",
            "from server.bind when unset"
        );
    }

    #[test]
    fn a_public_base_url_that_is_no_base_is_refused_naming_the_key() {
        for (value, kind) in [
            ("cds.example", "not a URL"),
            ("ftp://cds.example", "scheme"),
            ("https://cds.example/?tenant=a", "query"),
            ("https://cds.example/#top", "fragment"),
            ("http://", "host"),
            ("https://:443/cds", "host"),
        ] {
            let error = base_url(value).expect_err(value);
            let message = error.to_string();
            assert!(
                message.starts_with("server.public_base_url '"),
                "{value} ({kind}): {message}"
            );
        }
        assert!(matches!(
            base_url("ftp://cds.example"),
            Err(PublicBaseUrlError::Scheme { .. })
        ));
        assert!(matches!(
            base_url("https://cds.example/?tenant=a"),
            Err(PublicBaseUrlError::QueryOrFragment(_))
        ));
    }

    #[test]
    fn the_debug_of_settings_never_shows_the_admin_token_or_the_patient_key() {
        let token = "admin-token-0123456789abcdef-0123456789";
        let key = "patient-key-fedcba9876543210";
        let mut settings = Settings::default();
        settings.admin.token = Some(token.into());
        settings.store.patient_key = Some(key.into());
        let printed = format!("{settings:?} {settings:#?}");
        assert!(!printed.contains(token), "{printed}");
        assert!(!printed.contains(key), "{printed}");
        assert!(printed.contains("REDACTED"), "{printed}");
    }

    #[test]
    fn a_missing_file_or_an_unknown_key_is_a_configuration_error_naming_it() {
        let missing = Settings::load(Some(Path::new("/no/such/cramp-cds.toml"))).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "configuration: the file /no/such/cramp-cds.toml does not exist"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cramp-cds.toml");
        std::fs::write(&file, "[server]\npublic_base = \"https://cds.example\"\n").unwrap();
        let invalid = Settings::load(Some(&file)).unwrap_err();
        assert!(matches!(invalid, ConfigError::Invalid(_)));
        assert!(invalid.to_string().contains("public_base"), "{invalid}");
        assert!(std::error::Error::source(&invalid).is_some());
    }

    #[test]
    fn secrets_load_from_the_file_but_are_never_serialised() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cramp-cds.toml");
        std::fs::write(
            &file,
            "[admin]\ntoken = \"from-the-file-0123456789abcdef0123\"\n[store]\npatient_key = \"k\"\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            settings.admin.token.as_ref().map(|t| t.expose_secret()),
            Some("from-the-file-0123456789abcdef0123")
        );
        assert_eq!(
            settings
                .store
                .patient_key
                .as_ref()
                .map(|k| k.expose_secret()),
            Some("k")
        );
        let serialised = toml::to_string(&settings).unwrap();
        assert!(!serialised.contains("from-the-file"), "{serialised}");
        assert!(!serialised.contains("patient_key"), "{serialised}");
    }
}
