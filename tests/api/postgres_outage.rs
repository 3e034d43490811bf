//! A PostgreSQL store that goes down while the service runs: hook calls keep their
//! bounded latency and never turn into 401s. The policy is `store.replay_on_outage`:
//! `local` (the default) checks tokens' `jti` in the instance's memory for the
//! outage; `refuse` answers 503 at once. The server is a private PostgreSQL the
//! test starts and stops itself (initdb as the `postgres` user), never the shared one;
//! it listens on a Unix socket in its own directory only, so no port is picked.

use std::time::{Duration, Instant};

use crate::helpers::private_postgres::PrivatePostgres;
use crate::helpers::tokens::{ISSUER, es384_token, key_file_client};
use crate::helpers::{PUBLIC_BASE_URL, TestApp, fixture_bytes, spawn_authenticated_app};

const PATIENT_VIEW: &str = "/cds-services/cramp-numbness-patient-view";

async fn instance(url: String, policy: cramp_cds::store::ReplayOutagePolicy) -> TestApp {
    spawn_authenticated_app(move |s| {
        s.store.database_url = url;
        s.store.replay_on_outage = policy;
        s.server.public_base_url = Some(PUBLIC_BASE_URL.to_owned());
        s.auth.clients = vec![key_file_client(ISSUER)];
    })
    .await
}

fn token() -> String {
    es384_token(ISSUER, None, &format!("{PUBLIC_BASE_URL}{PATIENT_VIEW}"))
}

/// The status of a hook call with `token`, and how long it took.
async fn hook(app: &TestApp, token: &str) -> (u16, Duration) {
    let started = Instant::now();
    let request = fixture_bytes("diuretic-low-magnesium-mmol.fire");
    let response = app.post_with_token(PATIENT_VIEW, token, request).await;
    (response.status().as_u16(), started.elapsed())
}

/// Calls with fresh tokens until one answers 200, for up to `patience`: on a loaded machine
/// the first calls of a new instance (cold pool, cold caches) may exceed the 250 ms replay
/// timeout, and a `refuse` instance then answers 503 although the database is up.
async fn until_it_answers(app: &TestApp, patience: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < patience {
        if hook(app, &token()).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

#[actix_web::test]
#[ignore = "needs PostgreSQL's binaries and root: it starts a private PostgreSQL server"]
async fn a_postgresql_outage_never_turns_hook_calls_into_401s() {
    use cramp_cds::store::ReplayOutagePolicy;
    let postgres = PrivatePostgres::start();
    let local = instance(postgres.url(), ReplayOutagePolicy::Local).await;
    let refuse = instance(postgres.url(), ReplayOutagePolicy::Refuse).await;
    // Before the outage both answer, once warm; the outage is what is timed.
    let warm_up = Duration::from_secs(20);
    assert!(until_it_answers(&local, warm_up).await, "local answers 200");
    assert!(
        until_it_answers(&refuse, warm_up).await,
        "refuse answers 200"
    );

    assert!(postgres.stop(), "the private PostgreSQL stopped");
    let during = token();
    let (status, first) = hook(&local, &during).await;
    assert_eq!(status, 200, "policy local: hooks keep answering");
    let (status, second) = hook(&local, &token()).await;
    assert_eq!(status, 200);
    eprintln!("outage, policy local: first call {first:?}, next {second:?}");
    assert!(
        first < Duration::from_secs(4),
        "bounded by the replay and record timeouts, not the 5 s pool timeout: {first:?}"
    );
    assert_eq!(
        hook(&local, &during).await.0,
        401,
        "a token replayed against the same instance is still refused"
    );
    let (status, elapsed) = hook(&refuse, &token()).await;
    eprintln!("outage, policy refuse: {status} in {elapsed:?}");
    assert_eq!(status, 503, "policy refuse: 503, never 401");

    assert!(postgres.pg_ctl_start(), "the private PostgreSQL restarted");
    // Back to the shared cache once it answers again (retried after two seconds).
    assert!(
        until_it_answers(&refuse, Duration::from_secs(20)).await,
        "the refuse instance answers again after the outage"
    );
}
