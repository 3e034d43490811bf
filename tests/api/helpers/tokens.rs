//! The test keys, CDS Hooks JWTs built from them, and the one table of bad tokens that
//! every test of token verification uses, over HTTP or against the authenticator.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::{TestApp, now};

/// The issuer the tests' EHR signs as; its keys are the test keys.
pub const ISSUER: &str = "https://ehr.example";
/// An issuer whose client is bound to [`TENANT`].
pub const TENANT_ISSUER: &str = "https://tenant-ehr.example";
/// The tenant of [`TENANT_ISSUER`]'s client.
pub const TENANT: &str = "hospital-a";

/// A file of `tests/keys/`.
pub fn key_file(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A trusted client whose keys are the test JWK Set file (`tests/keys/jwks.json`).
pub fn key_file_client(issuer: &str) -> cramp_cds::auth::ClientSettings {
    cramp_cds::auth::ClientSettings {
        issuer: issuer.to_owned(),
        jwks_file: Some(format!(
            "{}/tests/keys/jwks.json",
            env!("CARGO_MANIFEST_DIR")
        )),
        jwks_url: None,
        allowed_jku: vec![],
        fhir_servers: vec![],
        allow_http_fhir: false,
        tenant: None,
    }
}

/// The clients [`bad_tokens`] is written for: [`ISSUER`] with the test keys, and
/// [`TENANT_ISSUER`] bound to [`TENANT`].
pub fn table_clients() -> Vec<cramp_cds::auth::ClientSettings> {
    vec![
        key_file_client(ISSUER),
        cramp_cds::auth::ClientSettings {
            tenant: Some(TENANT.to_owned()),
            ..key_file_client(TENANT_ISSUER)
        },
    ]
}

/// A token under construction; every field can be spoiled by a test.
#[derive(Clone)]
pub struct Token {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub jku: Option<String>,
    pub key: Vec<u8>,
    pub claims: Value,
}

impl Token {
    /// A valid ES384 token from [`ISSUER`] for `path` on `app` (its public base URL is the
    /// audience), issued at the fixture time, valid five minutes.
    pub fn es384(app: &TestApp, path: &str) -> Token {
        Token::es384_for(&format!("{}{path}", app.public_base_url))
    }

    /// A valid ES384 token from [`ISSUER`] for the exact URL `audience`.
    pub fn es384_for(audience: &str) -> Token {
        let iat = now().timestamp();
        Token {
            alg: Algorithm::ES384,
            kid: Some("es384-test".into()),
            typ: Some("JWT".into()),
            jku: None,
            key: key_file("es384-private.pem"),
            claims: json!({"iss": ISSUER, "aud": audience, "iat": iat,
                           "exp": iat + 300, "jti": uuid::Uuid::new_v4().to_string()}),
        }
    }

    /// The same, signed RS384 with the test RSA key.
    pub fn rs384(app: &TestApp, path: &str) -> Token {
        Token {
            alg: Algorithm::RS384,
            kid: Some("rs384-test".into()),
            key: key_file("rs384-private.pem"),
            ..Token::es384(app, path)
        }
    }

    pub fn sign(&self) -> String {
        self.sign_with(|_| {})
    }

    /// Signs with a header that `edit` may spoil further (e.g. with a `crit` parameter).
    pub fn sign_with(&self, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        header.typ = self.typ.clone();
        header.jku = self.jku.clone();
        edit(&mut header);
        let key = match self.alg {
            Algorithm::ES384 => EncodingKey::from_ec_pem(&self.key).unwrap(),
            Algorithm::RS384 => EncodingKey::from_rsa_pem(&self.key).unwrap(),
            _ => EncodingKey::from_secret(&self.key),
        };
        encode(&header, &self.claims, &key).unwrap()
    }

    /// The `Authorization` header value carrying it.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.sign())
    }

    pub fn with(mut self, claim: &str, value: Value) -> Token {
        self.claims[claim] = value;
        self
    }

    pub fn without(mut self, claim: &str) -> Token {
        self.claims.as_object_mut().unwrap().remove(claim);
        self
    }
}

/// A fresh ES384 CDS Hooks JWT from `issuer` (optionally for `tenant`) for the exact URL
/// `audience`, issued at the fixture time, valid five minutes, signed with the test key.
pub fn es384_token(issuer: &str, tenant: Option<&str>, audience: &str) -> String {
    let token = Token::es384_for(audience).with("iss", json!(issuer));
    match tenant {
        Some(tenant) => token.with("tenant", json!(tenant)),
        None => token,
    }
    .sign()
}

/// One way a token can be wrong.
pub struct BadToken {
    /// What is wrong with it, for messages.
    pub case: &'static str,
    /// The reason the authenticator gives (`AuthFailure::reason`).
    pub reason: &'static str,
    /// The `Authorization` header that carries it; `None`: no header at all.
    pub authorization: Option<String>,
}

/// Ten years, in seconds.
pub const TEN_YEARS: i64 = 10 * 365 * 24 * 3600;

/// Every bad token for the exact URL `audience` that the service must refuse, each for its
/// own reason, with the clients of [`table_clients`] trusted (for [`ISSUER`] the test keys
/// may also come from a JWK Set URL serving them), the fixture time as the clock and the
/// default limits (30 s leeway, one hour lifetime). Every test of bad tokens uses this table.
pub fn bad_tokens(audience: &str) -> Vec<BadToken> {
    let good = || Token::es384_for(audience);
    let iat = now().timestamp();
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let with_crit = |crit: Vec<String>| {
        good().sign_with(move |header| {
            for name in &crit {
                header.extras.insert(name.clone(), true);
            }
            header.crit = Some(crit);
        })
    };
    let bad = |case, reason, token: Token| BadToken {
        case,
        reason,
        authorization: Some(token.bearer()),
    };
    let raw = |case, reason, authorization: String| BadToken {
        case,
        reason,
        authorization: Some(authorization),
    };
    let (origin, path) =
        audience.split_at(audience.find("/cds-services").expect("an endpoint's URL"));
    vec![
        BadToken {
            case: "no Authorization header",
            reason: "missing_token",
            authorization: None,
        },
        raw(
            "not a bearer token",
            "missing_token",
            format!("Basic {}", good().sign()),
        ),
        raw("malformed token", "malformed", "Bearer not.a.jwt".into()),
        raw(
            "alg none",
            "malformed",
            format!(
                "Bearer {}.{}.",
                encode(json!({"alg": "none", "typ": "JWT", "kid": "es384-test"})),
                encode(good().claims)
            ),
        ),
        bad(
            "HS256 signed with the public key (algorithm confusion)",
            "algorithm",
            Token {
                alg: Algorithm::HS256,
                key: key_file("rs384-public.pem"),
                ..good()
            },
        ),
        bad(
            "typ not JWT",
            "typ",
            Token {
                typ: Some("at+jwt".into()),
                ..good()
            },
        ),
        bad(
            "no typ",
            "typ",
            Token {
                typ: None,
                ..good()
            },
        ),
        raw(
            "a crit extension",
            "crit",
            format!("Bearer {}", with_crit(vec!["ext".to_owned()])),
        ),
        raw(
            "an empty crit list",
            "crit",
            format!("Bearer {}", with_crit(vec![])),
        ),
        bad(
            "no kid",
            "kid_missing",
            Token {
                kid: None,
                ..good()
            },
        ),
        bad(
            "unknown kid",
            "kid_unknown",
            Token {
                kid: Some("no-such-key".into()),
                ..good()
            },
        ),
        bad(
            "right kid, another key's signature",
            "signature",
            Token {
                key: key_file("es384-other-private.pem"),
                ..good()
            },
        ),
        bad(
            "untrusted issuer",
            "issuer",
            good().with("iss", json!("https://evil.example")),
        ),
        bad(
            "audience of another endpoint",
            "audience",
            good().with("aud", json!(format!("{origin}/cds-services"))),
        ),
        bad(
            "audience with another host",
            "audience",
            good().with("aud", json!(format!("https://other.example{path}"))),
        ),
        bad(
            "expired past the leeway",
            "expired",
            good()
                .with("iat", json!(iat - 600))
                .with("exp", json!(iat - 60)),
        ),
        bad(
            "iat in the future past the leeway",
            "iat_future",
            good()
                .with("iat", json!(iat + 120))
                .with("exp", json!(iat + 400)),
        ),
        bad(
            "iat after exp",
            "iat_after_exp",
            good()
                .with("iat", json!(iat + 20))
                .with("exp", json!(iat + 10)),
        ),
        bad(
            "nbf in the future past the leeway",
            "nbf",
            good().with("nbf", json!(iat + 120)),
        ),
        bad(
            "lifetime a second above the maximum",
            "lifetime",
            good().with("exp", json!(iat + 3601)),
        ),
        bad(
            "exp far in the future",
            "time_range",
            good().with("exp", json!(i64::MAX)),
        ),
        bad(
            "nbf before the epoch",
            "time_range",
            good().with("nbf", json!(i64::MIN)),
        ),
        bad(
            "iat before the epoch",
            "time_range",
            good().with("iat", json!(-1)),
        ),
        bad(
            "an iat that overflows exp - iat",
            "time_range",
            good()
                .with("iat", json!(-9_223_372_036_854_775_807_i64))
                .with("exp", json!(iat + TEN_YEARS)),
        ),
        bad("no jti", "claims", good().without("jti")),
        bad("no exp", "claims", good().without("exp")),
        bad(
            "tenant mismatch",
            "tenant",
            good()
                .with("iss", json!(TENANT_ISSUER))
                .with("tenant", json!("hospital-b")),
        ),
        bad(
            "no tenant for a tenant-bound client",
            "tenant",
            good().with("iss", json!(TENANT_ISSUER)),
        ),
    ]
}
