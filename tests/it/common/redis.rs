//! A real `redis-server` for the cluster tests: on a free loopback port, with AOF persistence
//! in a temp dir (as a deployment keeps it), stopped by its PID. Debian's `redis-server`
//! package is installed by `.ci/run`; where it is missing the cluster tests say so and pass,
//! unless `WSCHAT_REQUIRE_REDIS=1` (set by `.ci/run`) makes that a failure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, spawn_server};

/// How long redis-server may take to answer its first PING (it loads its AOF first).
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

fn binary() -> Option<String> {
    let found = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    match found {
        Some(p) => Some(p.to_string()),
        None if std::env::var("WSCHAT_REQUIRE_REDIS").is_ok_and(|v| v == "1") => {
            panic!("redis-server is required (WSCHAT_REQUIRE_REDIS=1) but not installed")
        }
        None => {
            eprintln!(
                "SKIPPED: redis-server is not installed (apt install redis-server); .ci/run installs it"
            );
            None
        }
    }
}

impl Redis {
    /// A fresh redis-server, or `None` (the test is skipped) when none is installed.
    pub fn start(tag: &str) -> Option<Redis> {
        let bin = binary()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis {
            child: None,
            port,
            dir: TempDir::new(&format!("redis-{tag}")),
        };
        r.spawn(&bin);
        Some(r)
    }

    fn spawn(&mut self, bin: &str) {
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if self
                .try_cmd(&["PING"])
                .is_some_and(|r| r.starts_with("+PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer within {START_LIMIT:?}",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("redis is running").id() as i32
    }

    /// SIGTERM (Redis writes its AOF and exits), and wait for it.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("redis is running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        let bin = binary().unwrap();
        self.spawn(&bin);
    }

    pub fn freeze(&self) {
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    pub fn thaw(&self) {
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    /// One command in RESP; the raw reply, or `None` when Redis does not answer in 2 s.
    pub fn try_cmd(&self, args: &[&str]) -> Option<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0; 1 << 16];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args).expect("redis answers")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the real binary as a node of the cluster on `redis`, with `extra` arguments.
pub fn spawn_node(redis: &Redis, id: &str, extra: &[&str]) -> (Child, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wschat"));
    cmd.args([
        "--addr",
        "127.0.0.1:0",
        "--redis",
        &redis.url(),
        "--node-id",
        id,
    ])
    .args(["--relay-rate", "0"])
    .args(extra);
    // WSCHAT_TEST_NODE_LOGS=DIR keeps each node's log in DIR/<redis port>-<node id>.log, for
    // debugging a cluster test (RUST_LOG applies).
    if let Some(dir) = std::env::var_os("WSCHAT_TEST_NODE_LOGS") {
        let path = std::path::Path::new(&dir).join(format!("{}-{id}.log", redis.port));
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(r#"exec "$@" 2>"$LOG""#)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .env("LOG", path);
        return spawn_server(sh);
    }
    spawn_server(cmd)
}

/// Waits until the node's `/metrics` shows it connected to Redis.
pub fn await_up(addr: SocketAddr, limit: Duration) -> bool {
    super::wait_until(limit, || {
        let (status, _, body) = super::http_get(addr, "/metrics");
        status == 200
            && String::from_utf8_lossy(&body)
                .lines()
                .any(|l| l == "wschat_cluster_redis_up 1")
    })
}

/// The value of one metric of a node's `/metrics`.
pub fn node_metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, _, body) = super::http_get(addr, "/metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
