//! What the end-to-end tests of the `agora` binary share: a node started
//! with `agora up` (killed when dropped), the CLI on a data directory, and
//! reading the books of a data directory's store.
#![allow(dead_code)] // each test binary uses its own part of it

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASS: &str = "node e2e passphrase";
/// How long a node may take to come up (the first run creates the data
/// directory: keystore with Argon2, an agency, SQLite).
pub const START_DEADLINE: Duration = Duration::from_secs(90);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port with a bare HTTP/1.1 request: the status
/// and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A running `agora up`; killed (SIGKILL) when dropped.
pub struct Node {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Node {
    /// Starts `agora --data-dir data up --port port`, logging to `log`
    /// (appended: a restarted node adds to it), and waits for /healthz.
    pub fn start(data: &Path, port: u16, log: &Path) -> Node {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_agora"))
            .arg("--data-dir")
            .arg(data)
            .args(["up", "--port", &port.to_string()])
            .env("AGORA_PASSPHRASE", PASS)
            .env("RUST_LOG", "warn")
            .env_remove("AGORA_NODE")
            .env_remove("AGORA_DATA_DIR")
            .env_remove("AGORA_PASSPHRASE_FILE")
            .env_remove("AGORA_PORT")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start agora up");
        let mut node = Node {
            child,
            port,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!(
                    "agora up exited with {status} before serving:\n{}",
                    node.logs()
                );
            }
            if let Ok((200, body)) = http_get(port, "/healthz") {
                assert_eq!(body.trim(), "ok");
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "agora up did not answer /healthz within {START_DEADLINE:?}:\n{}",
                node.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status within `within`.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not stop within {within:?} of SIGTERM:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `program` (`agora`, or a shell running printed `agora` commands) in
/// `work`, with the test binary's directory first on the PATH, the test
/// passphrase, and none of the user's agora settings.
pub fn command(program: &str, work: &Path) -> Command {
    let (program, bin) = match program {
        "agora" => (
            env!("CARGO_BIN_EXE_agora"),
            Path::new(env!("CARGO_BIN_EXE_agora")).parent().unwrap(),
        ),
        other => (
            other,
            Path::new(env!("CARGO_BIN_EXE_agora")).parent().unwrap(),
        ),
    };
    let mut c = Command::new(program);
    c.current_dir(work)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("AGORA_PASSPHRASE", PASS)
        .env_remove("AGORA_NODE")
        .env_remove("AGORA_DATA_DIR")
        .env_remove("AGORA_PASSPHRASE_FILE")
        .stdin(Stdio::null());
    c
}

/// The `agora` binary on one data directory, in one working directory,
/// optionally with `--node`.
pub struct Cli {
    pub data: PathBuf,
    pub work: PathBuf,
    pub node: Option<String>,
}

impl Cli {
    pub fn new(data: &Path, work: &Path, node: Option<String>) -> Cli {
        std::fs::create_dir_all(work).unwrap();
        Cli {
            data: data.to_owned(),
            work: work.to_owned(),
            node,
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = command("agora", &self.work);
        c.arg("--data-dir").arg(&self.data);
        if let Some(url) = &self.node {
            c.args(["--node", url]);
        }
        c.args(args).output().expect("run agora")
    }

    /// Runs `args`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "agora {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `args`, which must fail with one line on stderr; that line.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "agora {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(stderr.lines().count(), 1, "one readable line: {stderr}");
        stderr
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "agora {args:?} printed no JSON ({e}): {} / {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

/// The store of data directory `data`, opened as the CLI does (its
/// at-rest key from the keystore, opened with [`PASS`]).
pub fn store(data: &Path) -> agora_store::Stores {
    struct Pass;
    impl agora_client::datadir::PassphraseSource for Pass {
        fn passphrase(&self) -> Result<zeroize::Zeroizing<String>, String> {
            Ok(zeroize::Zeroizing::new(PASS.to_owned()))
        }
    }
    agora_client::datadir::DataDir::new(data.to_owned(), Box::new(Pass), None)
        .store()
        .unwrap()
}

pub fn cents(data: &Path, account: &str) -> i64 {
    let l = store(data).ledger();
    l.balance(&agora_speed::AccountNumber::new(account).unwrap())
        .unwrap()
        .cents
}

pub fn books_balance(data: &Path) -> i128 {
    let l = store(data).ledger();
    l.total(agora_core::Currency::new("EUR").unwrap()).unwrap()
}

/// Issues `holder` a bond of `amount` for `role` from the node's bonding
/// agency, into the file `out`.
pub fn issue_bond(cli: &Cli, holder: &str, amount: &str, role: &str, out: &str) {
    cli.ok(&[
        "agency",
        "issue-bond",
        "--agency",
        "agora-bonding",
        "--holder",
        holder,
        "--amount",
        amount,
        "--roles",
        role,
        "--out",
        out,
    ]);
}

/// A new key pair `name`, registered as a SPEED customer with 20.00 EUR
/// and an e-purse card in `<name>.card` of `cli`'s working directory (the
/// card file's path).
pub fn register_customer(cli: &Cli, name: &str) -> PathBuf {
    let card = format!("{name}.card");
    cli.ok(&["key", "new", name]);
    cli.ok(&[
        "speed",
        "register",
        name,
        "--deposit",
        "20.00 EUR",
        "--card",
        &card,
    ]);
    cli.work.join(card)
}
