//! The load generator and the probes of `scripts/cluster-test.sh`: authenticated CDS Hooks
//! calls and feedback, as an EHR sends them, against a load balancer or single replicas.
//! Tokens are signed here with the test key in tests/keys/ (ES384, a fresh `jti` each), for
//! the audience the replicas are configured with (the load balancer's URL).
//!
//! ```text
//! cluster_load load BASE AUDIENCE_BASE SECONDS WORKERS OUT_DIR
//!     patient-view calls for 200 patients through BASE, feedback on one card in five; a call
//!     that fails (no answer, 502, 503) is retried up to 3 times, as an EHR would. Writes
//!     OUT_DIR/calls.csv (unix ms, first status, attempts, final status) and
//!     OUT_DIR/acked.csv (card uuid of each acknowledged feedback entry).
//! cluster_load replay AUDIENCE_BASE REPLICA_URL...
//!     one token used on the first replica, then replayed on every other: prints how many
//!     replicas accepted the replay.
//! cluster_load suppression AUDIENCE_BASE REPLICA_URL...
//!     a card overridden with a snoozing reason on the first replica: prints on how many other
//!     replicas the very next call still shows it.
//! ```

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const SERVICE: &str = "/cds-services/cramp-numbness-patient-view";
const ISSUER: &str = "https://loadtest.example";
const REASONS: &str = "https://cramp-cds.org/fhir/CodeSystem/override-reason";

struct Signer {
    header: Header,
    key: EncodingKey,
    audience_base: String,
}

impl Signer {
    fn new(audience_base: &str) -> Signer {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/es384-private.pem"
        ))
        .expect("tests/keys/es384-private.pem");
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some("es384-test".to_owned());
        Signer {
            header,
            key: EncodingKey::from_ec_pem(&pem).expect("an EC key"),
            audience_base: audience_base.trim_end_matches('/').to_owned(),
        }
    }

    /// A token for `path`, used once.
    fn token(&self, path: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": ISSUER, "aud": format!("{}{path}", self.audience_base),
                            "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string()});
        encode(&self.header, &claims, &self.key).expect("signed")
    }
}

/// A patient-view request for `patient` (the synthetic request, whose rules fire).
fn request_for(patient: &str) -> Vec<u8> {
    let body = String::from_utf8(cramp_cds::synthetic::patient_view_request(10)).unwrap();
    body.replace("synthetic-1", patient).into_bytes()
}

/// POSTs `body` with a fresh token; the status (0 when no answer came) and the JSON body.
async fn post(
    client: &reqwest::Client,
    signer: &Signer,
    base: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let sent = client
        .post(format!("{base}{path}"))
        .bearer_auth(signer.token(path))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
        Err(_) => (0, Value::Null),
    }
}

/// Whether a call may be sent again: no answer, or the load balancer or a stopping replica
/// said so. A 4xx or a 200 is final.
fn retryable(status: u16) -> bool {
    matches!(status, 0 | 502 | 503 | 504)
}

/// POSTs with up to 3 retries; (first status, attempts, final status, body).
async fn post_retrying(
    client: &reqwest::Client,
    signer: &Signer,
    base: &str,
    path: &str,
    body: &[u8],
) -> (u16, u32, u16, Value) {
    let (first, mut body_out) = post(client, signer, base, path, body.to_vec()).await;
    let (mut last, mut attempts) = (first, 1);
    while retryable(last) && attempts < 4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (last, body_out) = post(client, signer, base, path, body.to_vec()).await;
        attempts += 1;
    }
    (first, attempts, last, body_out)
}

fn feedback(card: &str, reason: &str) -> Vec<u8> {
    json!({"feedback": [{"card": card, "outcome": "overridden",
        "outcomeTimestamp": chrono::Utc::now().to_rfc3339(),
        "overrideReason": {"reason": {"system": REASONS, "code": reason}}}]})
    .to_string()
    .into_bytes()
}

async fn load(base: String, audience: String, seconds: u64, workers: usize, out: String) {
    std::fs::create_dir_all(&out).unwrap();
    let signer = Arc::new(Signer::new(&audience));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(std::io::BufWriter::new(
        std::fs::File::create(format!("{out}/calls.csv")).unwrap(),
    )));
    let acked = Arc::new(Mutex::new(std::io::BufWriter::new(
        std::fs::File::create(format!("{out}/acked.csv")).unwrap(),
    )));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (signer, client, calls, acked, stop, base) = (
            signer.clone(),
            client.clone(),
            calls.clone(),
            acked.clone(),
            stop.clone(),
            base.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                n += workers;
                let body = request_for(&format!("cluster-{}", n % 200));
                let (first, attempts, last, answer) =
                    post_retrying(&client, &signer, &base, SERVICE, &body).await;
                let at = chrono::Utc::now().timestamp_millis();
                writeln!(calls.lock().await, "{at},{first},{attempts},{last}").unwrap();
                let card = answer["cards"][0]["uuid"].as_str().map(str::to_owned);
                if let (true, Some(card)) = (n % 5 == 0, card) {
                    let path = format!("{SERVICE}/feedback");
                    let (_, _, status, _) = post_retrying(
                        &client,
                        &signer,
                        &base,
                        &path,
                        &feedback(&card, "not-relevant"),
                    )
                    .await;
                    if status == 200 {
                        writeln!(acked.lock().await, "{card}").unwrap();
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    calls.lock().await.flush().unwrap();
    acked.lock().await.flush().unwrap();
}

async fn replay(audience: String, replicas: Vec<String>) {
    let signer = Signer::new(&audience);
    let client = reqwest::Client::new();
    let token = signer.token(SERVICE);
    let send = |base: String| {
        let (client, token) = (client.clone(), token.clone());
        async move {
            client
                .post(format!("{base}{SERVICE}"))
                .bearer_auth(token)
                .header("Content-Type", "application/json")
                .body(request_for("replay-1"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let first = send(replicas[0].clone()).await;
    assert_eq!(first, 200, "the token's first use is accepted");
    let mut accepted = 0;
    for replica in &replicas[1..] {
        if send(replica.clone()).await == 200 {
            accepted += 1;
        }
    }
    println!(
        "replayed_tokens_accepted={accepted} of {}",
        replicas.len() - 1
    );
}

async fn suppression(audience: String, replicas: Vec<String>) {
    let signer = Signer::new(&audience);
    let client = reqwest::Client::new();
    let patient = format!("suppress-{}", uuid::Uuid::new_v4());
    let (status, answer) = post(
        &client,
        &signer,
        &replicas[0],
        SERVICE,
        request_for(&patient),
    )
    .await;
    assert_eq!(status, 200);
    let card = &answer["cards"][0];
    let rule = card["source"]["topic"]["code"]
        .as_str()
        .expect("a card with a rule")
        .to_owned();
    let path = format!("{SERVICE}/feedback");
    let (status, _) = post(
        &client,
        &signer,
        &replicas[0],
        &path,
        feedback(card["uuid"].as_str().unwrap(), "already-addressed"),
    )
    .await;
    assert_eq!(status, 200, "the override is acknowledged");
    let mut still_shown = 0;
    for replica in &replicas[1..] {
        let (_, answer) = post(&client, &signer, replica, SERVICE, request_for(&patient)).await;
        let shown = answer["cards"].as_array().is_some_and(|cards| {
            cards
                .iter()
                .any(|c| c["source"]["topic"]["code"] == rule.as_str())
        });
        if shown {
            still_shown += 1;
        }
    }
    println!(
        "suppression_missed_on_other_replicas={still_shown} of {} (rule {rule})",
        replicas.len() - 1
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("load") if args.len() == 6 => {
            load(
                args[1].clone(),
                args[2].clone(),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                args[5].clone(),
            )
            .await
        }
        Some("replay") if args.len() >= 4 => replay(args[1].clone(), args[2..].to_vec()).await,
        Some("suppression") if args.len() >= 4 => {
            suppression(args[1].clone(), args[2..].to_vec()).await
        }
        _ => {
            eprintln!(
                "usage: cluster_load load BASE AUDIENCE_BASE SECONDS WORKERS OUT_DIR | replay AUDIENCE_BASE REPLICA... | suppression AUDIENCE_BASE REPLICA..."
            );
            std::process::exit(2);
        }
    }
}
