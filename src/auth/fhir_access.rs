//! Which FHIR servers a request may make the service call (SSRF protection):
//! only a request's `fhirServer` that matches one of the caller's configured
//! servers by scheme, host, port and path prefix.

use url::Url;

/// The FHIR servers the service may contact for one caller.
#[derive(Debug, Clone, Default)]
pub struct FhirAccess {
    allowed: Vec<Url>,
    any: bool,
}

impl FhirAccess {
    /// Access to exactly these servers. Each entry must be an absolute URL; `http` entries
    /// are refused unless `allow_http`.
    pub fn to_servers(servers: &[String], allow_http: bool) -> Result<FhirAccess, String> {
        let mut allowed = Vec::new();
        for server in servers {
            let url = Url::parse(server)
                .map_err(|e| format!("fhir server '{server}' is not an absolute URL: {e}"))?;
            match url.scheme() {
                "https" => {}
                "http" if allow_http => {}
                "http" => {
                    return Err(format!(
                        "fhir server '{server}' uses http; set allow_http_fhir = true for this client to permit it"
                    ));
                }
                other => return Err(format!("fhir server '{server}' has scheme '{other}'")),
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
        self.any
            || self.allowed.iter().any(|allowed| {
                allowed.scheme() == server.scheme()
                    && allowed.host_str() == server.host_str()
                    && allowed.port_or_known_default() == server.port_or_known_default()
                    && path_under(server.path(), allowed.path())
            })
    }
}

fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
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
    fn http_servers_need_an_explicit_opt_in() {
        assert!(FhirAccess::to_servers(&["http://ehr.example/fhir".to_owned()], false).is_err());
        assert!(FhirAccess::to_servers(&["http://ehr.example/fhir".to_owned()], true).is_ok());
    }
}
