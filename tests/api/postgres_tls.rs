//! PostgreSQL over TLS against a real server: a private PostgreSQL the test starts with a
//! certificate from a CA made in the test, accepting TLS only on its port. `verify-full` with
//! that CA connects and the service answers; a certificate from another CA, or a host name the
//! certificate does not carry, is refused; a plain connection is refused by the server.

use cramp_cds::store::{Store, StoreSettings};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::helpers::private_postgres::{PrivatePostgres, ServerTls};
use crate::helpers::spawn_app_with;

/// A CA (its certificate as PEM) that can sign server certificates.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    fn server(&self, names: &[&str]) -> ServerTls {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerTls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate to a file and returns it (kept while the value lives).
    fn file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &self.pem).unwrap();
        file
    }
}

fn settings(url: String, ca_file: Option<&tempfile::NamedTempFile>) -> StoreSettings {
    StoreSettings {
        database_url: url,
        ca_file: ca_file.map(|f| f.path().to_path_buf()),
        ..StoreSettings::default()
    }
}

#[actix_web::test]
#[ignore = "needs root and PostgreSQL's binaries: .ci/run runs it (postgresql_tls)"]
async fn postgresql_tls_verify_full_with_the_servers_ca_connects_and_the_service_answers() {
    let ca = TestCa::new("cramp-cds test CA");
    let server = PrivatePostgres::start_tls(&ca.server(&["localhost"]));
    let ca_file = ca.file();
    // store.ca_file alone means sslmode=verify-full; the server takes TLS only on TCP.
    let url = server.tcp_url("localhost");
    Store::connect(&settings(url.clone(), Some(&ca_file)))
        .await
        .expect("verify-full with the server's CA connects");

    let ca_path = ca_file.path().to_path_buf();
    let app = spawn_app_with(move |s| {
        s.store.database_url = url;
        s.store.ca_file = Some(ca_path);
    })
    .await;
    let (status, body) = app.post_fixture("diuretic-low-magnesium-mmol.fire").await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
#[ignore = "needs root and PostgreSQL's binaries: .ci/run runs it (postgresql_tls)"]
async fn postgresql_tls_a_certificate_from_another_ca_is_refused() {
    let trusted = TestCa::new("the CA the service trusts");
    let other = TestCa::new("another CA");
    let server = PrivatePostgres::start_tls(&other.server(&["localhost"]));
    let ca_file = trusted.file();
    let url = format!("{}?sslmode=verify-ca", server.tcp_url("localhost"));
    let Err(error) = Store::connect(&settings(url, Some(&ca_file))).await else {
        panic!("a server certificate from an untrusted CA is refused");
    };
    let message = error.to_string();
    assert!(
        message.to_lowercase().contains("certificate") || message.contains("Issuer"),
        "the refusal says it is the certificate: {message}"
    );
}

#[actix_web::test]
#[ignore = "needs root and PostgreSQL's binaries: .ci/run runs it (postgresql_tls)"]
async fn postgresql_tls_verify_full_refuses_a_host_the_certificate_does_not_name() {
    let ca = TestCa::new("cramp-cds test CA");
    let server = PrivatePostgres::start_tls(&ca.server(&["db.cramp-cds.test"]));
    let ca_file = ca.file();
    let full = format!("{}?sslmode=verify-full", server.tcp_url("localhost"));
    assert!(
        Store::connect(&settings(full, Some(&ca_file)))
            .await
            .is_err(),
        "verify-full checks the host name"
    );
    // verify-ca checks the chain only, so the same server is accepted.
    let chain_only = format!("{}?sslmode=verify-ca", server.tcp_url("localhost"));
    Store::connect(&settings(chain_only, Some(&ca_file)))
        .await
        .expect("verify-ca accepts a certificate from the trusted CA whatever its name");
}

#[actix_web::test]
#[ignore = "needs root and PostgreSQL's binaries: .ci/run runs it (postgresql_tls)"]
async fn postgresql_tls_only_server_refuses_a_plain_connection() {
    let ca = TestCa::new("cramp-cds test CA");
    let server = PrivatePostgres::start_tls(&ca.server(&["localhost"]));
    let plain = format!("{}?sslmode=disable", server.tcp_url("localhost"));
    assert!(
        Store::connect(&settings(plain, None)).await.is_err(),
        "the server's pg_hba accepts only TLS on TCP, so sslmode=disable cannot connect"
    );
    let require = format!("{}?sslmode=require", server.tcp_url("localhost"));
    Store::connect(&settings(require, None))
        .await
        .expect("sslmode=require encrypts without checking the certificate");
}
