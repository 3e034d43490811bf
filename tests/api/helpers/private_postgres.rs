//! A PostgreSQL server of a test's own, in a temporary directory (initdb as the `postgres`
//! user), never the shared one. By default it listens on a Unix socket in its own directory
//! only; [`PrivatePostgres::start_tls`] also listens on a loopback port with TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The TLS files a server presents: its certificate chain and key (PEM).
pub struct ServerTls {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
}

/// A running private PostgreSQL; stopped when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    /// The loopback port, when it listens on TCP.
    pub port: Option<u16>,
}

impl PrivatePostgres {
    /// Starts one on a Unix socket only, or fails the test saying what this machine lacks:
    /// PostgreSQL's binaries under /usr/lib/postgresql, a `postgres` user, and root.
    pub fn start() -> PrivatePostgres {
        let server = PrivatePostgres::init(None);
        assert!(
            server.pg_ctl_start(),
            "the private PostgreSQL did not start"
        );
        server
    }

    /// Starts one that also listens on 127.0.0.1 (a free port) and accepts only TLS there
    /// (`hostssl` in pg_hba.conf), presenting `tls`.
    pub fn start_tls(tls: &ServerTls) -> PrivatePostgres {
        let port = free_port();
        let server = PrivatePostgres::init(Some(port));
        let dir = server.data.parent().unwrap();
        write_for_postgres(&dir.join("server.crt"), &tls.cert_pem);
        write_for_postgres(&dir.join("server.key"), &tls.key_pem);
        let hba = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
        write_for_postgres(&server.data.join("pg_hba.conf"), hba);
        assert!(
            server.pg_ctl_start(),
            "the private PostgreSQL with TLS did not start (see {})",
            server.data.with_file_name("postgres.log").display()
        );
        server
    }

    fn init(port: Option<u16>) -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("this test needs PostgreSQL's binaries (/usr/lib/postgresql/*/bin/initdb)");
        let dir = tempfile::tempdir().unwrap().keep();
        let data = dir.join("data");
        let chown = Command::new("chown")
            .args(["postgres", dir.to_str().unwrap()])
            .status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "this test needs root and a postgres user (chown postgres {})",
            dir.display()
        );
        let server = PrivatePostgres { bin, data, port };
        let data = server.data.to_str().unwrap();
        assert!(
            server.as_postgres("initdb", &["-D", data, "-U", "postgres", "--auth=trust"]),
            "initdb as the postgres user failed"
        );
        server
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

    /// Starts the server (again).
    pub fn pg_ctl_start(&self) -> bool {
        // The socket lives in the data directory; TCP only when a port was chosen.
        let options = match self.port {
            None => format!("-c listen_addresses='' -k {}", self.data.display()),
            Some(port) => {
                let dir = self.data.parent().unwrap().display().to_string();
                format!(
                    "-c listen_addresses=127.0.0.1 -p {port} -k {} -c ssl=on \
                     -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
                    self.data.display()
                )
            }
        };
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

    /// Stops the server at once (`-m immediate`).
    pub fn stop(&self) -> bool {
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

    /// A URL over its Unix socket.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost/postgres?host={}",
            self.data.display()
        )
    }

    /// A URL over TCP to `host` (which the certificate must name for `verify-full`).
    pub fn tcp_url(&self, host: &str) -> String {
        let port = self.port.expect("the server listens on TCP");
        format!("postgres://postgres@{host}:{port}/postgres")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `text` to `path`, owned by `postgres` and readable by it only (PostgreSQL refuses a
/// key file that others can read).
fn write_for_postgres(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let ok = Command::new("chown")
        .args(["postgres", path.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("chmod")
            .args(["600", path.to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success());
    assert!(ok, "cannot hand {} to the postgres user", path.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
