//! Which FHIR servers a request may make the service call (SSRF protection):
//! only a request's `fhirServer` that matches one of the caller's configured
//! servers by scheme, host, port and path prefix.
//!
//! [`is_under`] is the one check of "this URL is under that base URL", used both here (a
//! `fhirServer` under an allowed server) and by the FHIR client (every URL it fetches, `next`
//! links included, under the `fhirServer`). It compares whole path segments (`/fhirX` is not
//! under `/fhir`) of a path already normalised by [`Url`] (which resolves `.` and `..`), and
//! refuses percent-encoded dots, slashes and backslashes, which a server could decode into
//! segments the check never saw.

use url::Url;

/// The FHIR servers the service may contact for one caller.
#[derive(Debug, Clone, Default)]
pub struct FhirAccess {
    allowed: Vec<Url>,
    any: bool,
}

/// Why a configured FHIR server cannot be allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FhirServerError {
    /// The entry does not parse as an absolute URL.
    #[error("fhir server '{server}' is not an absolute URL: {source}")]
    NotAbsolute {
        /// The entry as configured.
        server: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// An `http` entry without the client's opt-in.
    #[error("fhir server '{0}' uses http; set allow_http_fhir = true for this client to permit it")]
    HttpNotAllowed(String),
    /// A scheme other than `https` and `http`.
    #[error("fhir server '{server}' has scheme '{scheme}'")]
    Scheme {
        /// The entry as configured.
        server: String,
        /// Its scheme.
        scheme: String,
    },
}

impl FhirAccess {
    /// Access to exactly these servers. Each entry must be an absolute URL; `http` entries
    /// are refused unless `allow_http`.
    pub fn to_servers(servers: &[String], allow_http: bool) -> Result<FhirAccess, FhirServerError> {
        let mut allowed = Vec::new();
        for server in servers {
            let url = Url::parse(server).map_err(|source| FhirServerError::NotAbsolute {
                server: server.clone(),
                source,
            })?;
            match url.scheme() {
                "https" => {}
                "http" if allow_http => {}
                "http" => return Err(FhirServerError::HttpNotAllowed(server.clone())),
                other => {
                    return Err(FhirServerError::Scheme {
                        server: server.clone(),
                        scheme: other.to_owned(),
                    });
                }
            }
            allowed.push(url);
        }
        Ok(FhirAccess {
            allowed,
            any: false,
        })
    }

    /// Access to no server: only the prefetch is used.
    pub fn none() -> FhirAccess {
        FhirAccess::default()
    }

    /// Access to any server (the offline `evaluate` command, run by an operator).
    pub fn any() -> FhirAccess {
        FhirAccess {
            allowed: Vec::new(),
            any: true,
        }
    }

    /// Whether the service may call `server`.
    pub fn permits(&self, server: &Url) -> bool {
        self.any || self.allowed.iter().any(|allowed| is_under(server, allowed))
    }
}

/// Whether `url` is `base` or lies under it: the same scheme, host and port, no user name or
/// password, and a path that is `base`'s or continues it after a `/` ([`path_under`]).
/// A path holding `%2e`, `%2f` or `%5c` (any case) is never under anything.
///
/// ```
/// use cramp_cds::fhir::access::is_under;
/// use url::Url;
///
/// let base = Url::parse("https://ehr.example/fhir").unwrap();
/// let under = |u: &str| is_under(&Url::parse(u).unwrap(), &base);
/// assert!(under("https://ehr.example/fhir/Patient/1"));
/// assert!(!under("https://ehr.example/fhirX/Patient/1"));
/// assert!(!under("https://ehr.example/fhir/Patient/..%2f..%2fadmin"));
/// ```
pub fn is_under(url: &Url, base: &Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none()
        && !has_encoded_separator(url.path())
        && path_under(url.path(), base.path())
}

/// Whether the URL path `path` is `prefix` or continues it after a `/`, segment by segment:
/// `/fhir/Patient` and `/fhir/` are under `/fhir`, `/fhirX` is not. An empty or `/` prefix
/// contains every path. Both paths must already be normalised (no `.` or `..` segments).
pub fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `path` holds a percent-encoded `.`, `/` or `\`.
fn has_encoded_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c')
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_matches_on_scheme_host_port_and_path_prefix() {
        let access =
            FhirAccess::to_servers(&["https://ehr.example/fhir/r4".to_owned()], false).unwrap();
        let ok = |u: &str| access.permits(&Url::parse(u).unwrap());
        assert!(ok("https://ehr.example/fhir/r4"));
        assert!(ok("https://ehr.example:443/fhir/r4/"));
        assert!(!ok("http://ehr.example/fhir/r4"));
        assert!(!ok("https://ehr.example:8443/fhir/r4"));
        assert!(!ok("https://ehr.example/fhir/r4-other"));
        assert!(!ok("https://evil.example/fhir/r4"));
        assert!(!ok("https://ehr.example.evil.example/fhir/r4"));
    }

    #[test]
    fn a_path_is_under_a_prefix_only_on_a_segment_boundary() {
        assert!(path_under("/fhir", "/fhir"));
        assert!(path_under("/fhir/", "/fhir"));
        assert!(path_under("/fhir/Patient/1", "/fhir"));
        assert!(path_under("/fhir/Patient/1", "/fhir/"));
        assert!(path_under("/anything", "/"));
        assert!(path_under("/anything", ""));
        assert!(!path_under("/fhirX", "/fhir"));
        assert!(!path_under("/fhirX/Observation", "/fhir"));
        assert!(!path_under("/fhir-evil/steal", "/fhir/"));
        assert!(!path_under("/fhi", "/fhir"));
        assert!(!path_under("/", "/fhir"));
    }

    #[test]
    fn a_url_is_under_a_base_on_the_same_origin_after_normalisation_only() {
        let base = Url::parse("https://ehr.example/r4").unwrap();
        let under = |u: &str| is_under(&Url::parse(u).unwrap(), &base);
        assert!(under("https://ehr.example/r4/Patient/1?x=%2F"));
        assert!(under("https://ehr.example:443/r4/Patient/1"));
        // The URL parser resolves dot segments, literal or encoded, before the check.
        assert!(!under("https://ehr.example/r4/Patient/../../r4-evil/steal"));
        assert!(!under(
            "https://ehr.example/r4/Patient/%2e%2e/%2E%2E/r4-evil"
        ));
        assert!(!under("https://ehr.example/r4-evil/steal"));
        assert!(!under("http://ehr.example/r4/Patient/1"));
        assert!(!under("https://ehr.example:8443/r4/Patient/1"));
        assert!(!under("https://evil.example/r4/Patient/1"));
        assert!(!under("https://user:pw@ehr.example/r4/Patient/1"));
    }

    #[test]
    fn encoded_dots_slashes_and_backslashes_in_the_path_are_never_under_a_base() {
        let base = Url::parse("https://ehr.example/r4").unwrap();
        for path in [
            "/r4/Patient/..%2f..%2fadmin",
            "/r4/Patient/..%2F..%2Fadmin",
            "/r4/Patient/%2e%2e%5cadmin",
            "/r4/Patient/a%2eb",
            "/r4/Patient/x%5Cy",
        ] {
            let mut url = base.clone();
            url.set_path(path);
            assert!(!is_under(&url, &base), "{url}");
        }
    }

    #[test]
    fn http_servers_need_an_explicit_opt_in() {
        let refused = FhirAccess::to_servers(&["http://ehr.example/fhir".to_owned()], false);
        assert_eq!(
            refused.unwrap_err(),
            FhirServerError::HttpNotAllowed("http://ehr.example/fhir".to_owned())
        );
        assert!(FhirAccess::to_servers(&["http://ehr.example/fhir".to_owned()], true).is_ok());
    }
}
