//! Writes what `scripts/loadtest.sh` sends: synthetic patient-view request
//! bodies of about 10 and 100 resources, and signed CDS Hooks JWTs (one per
//! request, each with a fresh `jti`) made with the test keys in tests/keys/.
//!
//! `cargo run --release --example make_load -- OUT_DIR TOKENS AUDIENCE ALG`

use std::io::Write;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, count, audience, alg] = args.as_slice() else {
        eprintln!("usage: make_load OUT_DIR TOKENS AUDIENCE ES384|RS384");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("TOKENS is a number");
    std::fs::create_dir_all(out).expect("output directory");
    for (name, size) in [("small", 10), ("typical", 100)] {
        let body = cramp_cds::synthetic::patient_view_request(size);
        std::fs::write(format!("{out}/{name}.json"), body).expect("body written");
    }
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let (algorithm, kid, key) = match alg.as_str() {
        "ES384" => (
            Algorithm::ES384,
            "es384-test",
            EncodingKey::from_ec_pem(&std::fs::read(format!("{keys}/es384-private.pem")).unwrap())
                .unwrap(),
        ),
        "RS384" => (
            Algorithm::RS384,
            "rs384-test",
            EncodingKey::from_rsa_pem(&std::fs::read(format!("{keys}/rs384-private.pem")).unwrap())
                .unwrap(),
        ),
        other => panic!("unknown algorithm {other}"),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let now = chrono::Utc::now().timestamp();
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(format!("{out}/tokens-{alg}.txt")).unwrap());
    for _ in 0..count {
        let claims = json!({"iss": "https://loadtest.example", "aud": audience, "iat": now,
                            "exp": now + 1800, "jti": uuid::Uuid::new_v4().to_string()});
        writeln!(file, "{}", encode(&header, &claims, &key).unwrap()).unwrap();
    }
}
