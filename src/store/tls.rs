//! TLS to PostgreSQL: the URL's `sslmode` (and `sslrootcert`) as libpq spells them, and
//! `store.ca_file` as the CA that signed the server's certificate. TLS is rustls-based, so no
//! system OpenSSL is needed.

use std::path::Path;

/// The `sslmode` values PostgreSQL clients accept.
const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Why the TLS settings of a PostgreSQL URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSettingError {
    /// The URL does not parse.
    #[error("store.database_url is not a URL: {0}")]
    Url(#[from] url::ParseError),
    /// `sslmode` is none of the values PostgreSQL knows.
    #[error(
        "store.database_url: sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full"
    )]
    UnknownMode(String),
    /// `store.ca_file` names no readable file.
    #[error("store.ca_file: cannot read {path}: {source}")]
    CaFile {
        /// The configured path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The PostgreSQL URL to connect with: `store.ca_file` becomes `sslrootcert` (unless the URL
/// names one), and a CA file without an `sslmode` means `verify-full`, since a CA is given to
/// be checked. A verifying mode without any CA checks against the built-in public roots. An
/// unknown `sslmode` or an unreadable CA file is refused, naming the setting.
pub fn postgres_url(url: &str, ca_file: Option<&Path>) -> Result<String, TlsSettingError> {
    let mut parsed = url::Url::parse(url)?;
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let value = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let mode = value("sslmode");
    if let Some(mode) = &mode
        && !SSL_MODES.contains(&mode.as_str())
    {
        return Err(TlsSettingError::UnknownMode(mode.clone()));
    }
    let mut added = Vec::new();
    if let Some(ca) = ca_file {
        std::fs::metadata(ca).map_err(|source| TlsSettingError::CaFile {
            path: ca.display().to_string(),
            source,
        })?;
        if value("sslrootcert").is_none() {
            added.push(("sslrootcert", ca.display().to_string()));
        }
        if mode.is_none() {
            added.push(("sslmode", "verify-full".to_owned()));
        }
    }
    if !added.is_empty() {
        let mut query = parsed.query_pairs_mut();
        for (key, value) in added {
            query.append_pair(key, &value);
        }
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "postgres://cds@db.example:5432/cds";

    #[test]
    fn a_url_without_tls_settings_is_left_as_it_is() {
        assert_eq!(postgres_url(PLAIN, None).unwrap(), PLAIN);
        let require = format!("{PLAIN}?sslmode=require");
        assert_eq!(postgres_url(&require, None).unwrap(), require);
    }

    #[test]
    fn a_ca_file_becomes_sslrootcert_and_means_verify_full() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let url = postgres_url(PLAIN, Some(ca.path())).unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert!(pairs.contains(&("sslmode".into(), "verify-full".into())));
        assert!(pairs.contains(&("sslrootcert".into(), ca.path().display().to_string())));
    }

    #[test]
    fn the_urls_own_sslmode_and_sslrootcert_win_over_the_ca_file() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let url = format!("{PLAIN}?sslmode=verify-ca&sslrootcert=/etc/ssl/db-ca.pem");
        let out = postgres_url(&url, Some(ca.path())).unwrap();
        assert_eq!(out, url);
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name() {
        let err = postgres_url(&format!("{PLAIN}?sslmode=verify"), None).unwrap_err();
        assert!(
            err.to_string().contains("sslmode=verify is not one of"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_ca_file_is_refused_naming_it() {
        let err = postgres_url(PLAIN, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            err.to_string()
                .contains("store.ca_file: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
    }
}
