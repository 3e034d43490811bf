//! A PostgreSQL store that goes down while the service runs: hook calls keep their
//! bounded latency and never turn into 401s. The policy is `store.replay_on_outage`:
//! `local` (the default) checks tokens' `jti` in the instance's memory for the
//! outage; `refuse` answers 503 at once. The server is a private PostgreSQL the
//! test starts and stops itself (initdb as the `postgres` user), never the shared one.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{
    TestApp, es384_token, fixture_bytes, key_file_client, spawn_authenticated_app,
};

const PATIENT_VIEW: &str = "/cds-services/cramp-numbness-patient-view";
const ISSUER: &str = "https://ehr.example";

/// A PostgreSQL server of the test's own, in a temporary directory.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// `None` where this machine has no PostgreSQL binaries or no `postgres` user.
    fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())?;
        let dir = tempfile::tempdir().ok()?.keep();
        let data = dir.join("data");
        Command::new("chown")
            .args(["postgres", dir.to_str()?])
            .status()
            .ok()?
            .success()
            .then_some(())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let server = PrivatePostgres { bin, data, port };
        let initdb = server.as_postgres(
            "initdb",
            &[
                "-D",
                server.data.to_str()?,
                "-U",
                "postgres",
                "--auth=trust",
            ],
        );
        initdb.then_some(())?;
        server.pg_ctl_start().then_some(server)
    }

    fn as_postgres(&self, program: &str, args: &[&str]) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pg_ctl_start(&self) -> bool {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.data.display()
        );
        let log = self.data.with_file_name("postgres.log");
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        )
    }

    fn stop(&self) -> bool {
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn instance(url: String, policy: cramp_cds::store::ReplayOutagePolicy) -> TestApp {
    spawn_authenticated_app(move |s| {
        s.store.database_url = url;
        s.store.replay_on_outage = policy;
        s.server.public_base_url = Some("https://cds.example".to_owned());
        s.auth.clients = vec![key_file_client(ISSUER)];
    })
    .await
}

fn token() -> String {
    es384_token(ISSUER, None, &format!("https://cds.example{PATIENT_VIEW}"))
}

/// The status of a hook call with `token`, and how long it took.
async fn hook(app: &TestApp, token: &str) -> (u16, Duration) {
    let started = Instant::now();
    let response = app
        .http
        .post(format!("{}{PATIENT_VIEW}", app.address))
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {token}"))
        .body(fixture_bytes("diuretic-low-magnesium-mmol.fire"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), started.elapsed())
}

#[actix_web::test]
async fn a_postgresql_outage_never_turns_hook_calls_into_401s() {
    use cramp_cds::store::ReplayOutagePolicy;
    let Some(postgres) = PrivatePostgres::start() else {
        eprintln!("skipped: no PostgreSQL binaries or postgres user to start a private server");
        return;
    };
    let local = instance(postgres.url(), ReplayOutagePolicy::Local).await;
    let refuse = instance(postgres.url(), ReplayOutagePolicy::Refuse).await;
    assert_eq!(hook(&local, &token()).await.0, 200);
    assert_eq!(hook(&refuse, &token()).await.0, 200);

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
    let mut recovered = false;
    for _ in 0..40 {
        if hook(&refuse, &token()).await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "the refuse instance answers again after the outage"
    );
}
