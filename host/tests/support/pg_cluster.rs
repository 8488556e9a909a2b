//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary folder,
//! `postgres` on a free port of 127.0.0.1, trust authentication, gone when the
//! test process exits (a watchdog shell stops it and removes the folder).
//!
//! Used by the store's contract suite (`src/store/contract.rs`) and by the
//! integration tests (`tests/common`), so it depends on std only. A machine
//! without the server binaries fails the test with what to install: it never
//! skips. As root (CI), the server runs as the `postgres` user, as initdb
//! refuses root.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub port: u16,
    /// The folder holding `data/` (and the server's socket and log).
    pub dir: PathBuf,
    bin: PathBuf,
    next_db: AtomicU32,
    /// More `postgres` options (`-c key=value …`), for every start.
    extra_options: String,
}

/// The cluster this test process shares among its tests (started on first use).
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(Cluster::start_new)
}

/// Where initdb, pg_ctl and postgres are: PATH first, then Debian's folders.
/// On a fresh Debian machine, as root, the server package is installed first,
/// so the README's `cargo test --workspace` needs nothing set up by hand.
fn server_bin_dir() -> PathBuf {
    // One installer at a time: tests of one binary start clusters concurrently.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = find_server_bin_dir() {
        return dir;
    }
    let can_install = is_root()
        && Command::new("apt-get")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if can_install {
        eprintln!(
            "installing PostgreSQL's server binaries for the tests: apt-get install postgresql"
        );
        let installed = Command::new("sh")
            .args([
                "-c",
                "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
                 apt-get install -y -qq --no-install-recommends postgresql >/dev/null",
            ])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if installed && let Some(dir) = find_server_bin_dir() {
            return dir;
        }
    }
    panic!(
        "the PostgreSQL tests need the server binaries (initdb, pg_ctl, postgres) on PATH or \
         in /usr/lib/postgresql/*/bin: install them, e.g. `apt-get install postgresql` \
         (.ci/run does this when initdb is missing)"
    )
}

fn find_server_bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.exists() {
                // /usr/local/bin/initdb may be a link into the real folder: pg_ctl
                // finds postgres beside its own resolved path, so resolve it.
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                return real.parent().map(Path::to_path_buf);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Whether this process runs as root (/proc/self belongs to its effective user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// A cluster of its own (for a test that stops and starts the server).
    pub fn start_new() -> Cluster {
        Cluster::start_new_with(|_| String::new())
    }

    /// A cluster of its own whose server also gets the options `extra` returns
    /// (`-c key=value …`); `extra` is given the cluster's folder, to put files
    /// the options name (certificates, say) there before the first start.
    pub fn start_new_with(extra: impl FnOnce(&Path) -> String) -> Cluster {
        let bin = server_bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "portico-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let out = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .output()
                .expect("run chown");
            assert!(
                out.status.success(),
                "cannot give {} to the postgres user (initdb refuses root): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let extra_options = extra(&dir);
        let mut cluster = Cluster {
            port: free_port(),
            dir,
            bin,
            next_db: AtomicU32::new(0),
            extra_options,
        };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The free port may be taken by another process before the server
        // binds it (tests run side by side): take another one then.
        let mut attempts = 0;
        loop {
            match cluster.try_start() {
                Ok(()) => break,
                Err(why) if why.contains("Address already in use") && attempts < 5 => {
                    attempts += 1;
                    cluster.port = free_port();
                }
                Err(why) => panic!("pg_ctl start failed: {why}"),
            }
        }
        cluster.spawn_watchdog();
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server command, as the postgres user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Start the server (again) on its port; returns once it accepts connections.
    pub fn start(&self) {
        if let Err(why) = self.try_start() {
            panic!("pg_ctl start failed: {why}");
        }
    }

    /// Start the server on its port, or say why it did not (pg_ctl's words and the server's log).
    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 \
             -c shared_buffers=32MB {}",
            self.port,
            self.dir.display(),
            self.extra_options
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        ))
    }

    /// Stop the server (fast: connections are cut, as a crash or failover would).
    pub fn stop(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// When this test process is gone, stop the server and remove its folder.
    // Never waited for on purpose: it outlives this process (init reaps it).
    #[allow(clippy::zombie_processes)]
    fn spawn_watchdog(&self) {
        let script = r#"
            while [ -d "/proc/$1" ]; do sleep 1; done
            "$2/pg_ctl" -D "$3/data" -m immediate stop >/dev/null 2>&1
            rm -rf "$3"
        "#;
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", script, "watchdog"]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", script, "watchdog"]);
            c
        };
        cmd.arg(std::process::id().to_string())
            .arg(&self.bin)
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watchdog");
    }

    /// `postgres://postgres@127.0.0.1:PORT/{db}` plus `params` (`a=b&c=d`).
    pub fn url(&self, db: &str, params: &str) -> String {
        let mut url = format!("postgres://postgres@127.0.0.1:{}/{db}", self.port);
        if !params.is_empty() {
            url.push('?');
            url.push_str(params);
        }
        url
    }

    /// A new, empty database; returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            self.next_db.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", &name])
                .stdin(Stdio::null())
                .output()
                .expect("run createdb");
            if out.status.success() {
                return self.url(&name, "");
            }
            // CREATE DATABASE copies template1, which allows one copy at a time.
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                err.contains("is being accessed by other users") && Instant::now() < deadline,
                "createdb {name} failed: {err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn data_path(&self) -> &Path {
        &self.dir
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
