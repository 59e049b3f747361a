//! `agora up` and `agora serve`: the node on this data directory.
//!
//! `agora up` is the embedded default: on first run it creates the data
//! directory (SQLite, keystore, a bonding agency, the node's arbiter and CPO
//! server, a trust store naming them), then serves every role on one
//! loopback port with the public web pages. `agora serve --config node.toml`
//! runs a chosen set of roles with chosen limits (docs/NODE.md).
//!
//! This module also builds the roles from a data directory for the CLI's
//! in-process mode ([`cpo_service`]), so that `agora cpo ...` without
//! `--node` runs the very code the node runs.

use crate::datadir::{Ctx, ARBITER_KEY, SERVER_KEY};
use agora_client::datadir::role_keys;
use agora_cpo::{BondTrust, Peer};
use agora_node::cpo::{CpoService, CpoSpec, TrustSource};
use agora_node::pki::{PkiService, PkiSpec};
use agora_node::{Node, NodeConfig, Service};
use agora_pki::{PartyRole, TrustStore};
use anyhow::{bail, Context};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The port `agora up` serves on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7878;
/// The name of the bonding agency `agora up` creates.
pub use agora_client::datadir::names::DEFAULT_AGENCY;

/// The trust of a data directory: its trust store's agencies and the CRLs
/// in its CRL directory, read afresh on every call.
struct DirTrust {
    trust_path: PathBuf,
    crl_dir: PathBuf,
}

impl TrustSource<BondTrust> for DirTrust {
    fn load(&self) -> Result<BondTrust, String> {
        let trust = TrustStore::load(&self.trust_path).map_err(|e| e.to_string())?;
        Ok(BondTrust {
            agencies: trust.agency_anchors(),
            crls: agora_node::pki::current_crls(&self.crl_dir)?,
        })
    }
}

fn peers(trust: &TrustStore, role: PartyRole) -> Vec<Peer> {
    trust
        .by_role(role)
        .filter_map(|p| {
            Some(Peer {
                sign: p.verifying_key()?,
                enc: p.x25519()?,
            })
        })
        .collect()
}

/// The CPO roles of this data directory (its arbiter and its server) on its
/// store.
pub fn cpo_service(ctx: &Ctx, ks: &agora_pki::Keystore) -> anyhow::Result<CpoService> {
    let trust = ctx.load_trust()?;
    let server_keys = role_keys(ks, SERVER_KEY)
        .context("this data directory has no CPO server key (made by `agora init`)")?;
    let arbiter_keys = role_keys(ks, ARBITER_KEY)
        .context("this data directory has no CPO arbiter key (made by `agora init`)")?;
    let spec = CpoSpec {
        store: ctx.store()?,
        server: Some((server_keys, peers(&trust, PartyRole::Arbiter))),
        arbiter: Some((
            arbiter_keys,
            crate::cpo::arbiter_policy(ctx)?,
            peers(&trust, PartyRole::Server),
        )),
        trust: Box::new(DirTrust {
            trust_path: ctx.trust_path(),
            crl_dir: ctx.crl_dir(),
        }),
    };
    CpoService::new(spec).map_err(|e| anyhow::anyhow!("loading the trust: {e}"))
}

fn pki_service(ctx: &Ctx, crl_days: u64) -> anyhow::Result<PkiService> {
    let agencies = crate::agency::agency_names(ctx)
        .iter()
        .map(|n| ctx.agency(n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PkiService::new(PkiSpec {
        store: ctx.store()?,
        agencies,
        crl_dir: ctx.crl_dir(),
        crl_days,
    }))
}

/// `agora up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The loopback port to serve on.
    #[arg(long, default_value_t = DEFAULT_PORT, env = "AGORA_PORT")]
    port: u16,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

/// `agora serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The node's configuration (docs/NODE.md).
    #[arg(long)]
    config: PathBuf,
}

/// The TOML of `agora serve --config` (documented in docs/NODE.md).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeToml {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// URL clients use; default `http://<listen>`.
    pub public_url: Option<String>,
    /// Roles: any of `agency`, `cpo` (arbiter and server), `speed` (broker
    /// and demo vendor), `stp` (commit authority and escrow), `lite` (the
    /// lightweight vendor of demo quotes), `web`.
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    /// Seconds between housekeeping runs (CRL refresh, revocations, awards).
    #[serde(default = "default_housekeeping")]
    pub housekeeping_secs: u64,
    /// Days a CRL issued by a hosted agency is valid.
    #[serde(default = "default_crl_days")]
    pub crl_days: u64,
    /// Log format: `text` or `json`.
    #[serde(default = "default_log")]
    pub log_format: String,
    /// Log every request (route template, status, duration, problem code;
    /// nothing the client sent), at info level.
    #[serde(default)]
    pub request_log: bool,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
}

/// `[limits]` of node.toml (each is [`NodeConfig`]'s field of the same
/// name; times in seconds).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest upload (a SPEED complaint), bytes.
    pub max_upload_bytes: u64,
    /// Requests served at once before `503`.
    pub max_in_flight: usize,
    /// Request bodies being received at once.
    pub max_receiving: usize,
    /// Uploads at once.
    pub max_uploads: usize,
    /// Uploads at once from one client address.
    pub max_uploads_per_client: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// Seconds for a request head to arrive (and a keep-alive idle).
    pub header_timeout_secs: f64,
    /// Seconds for a request body to arrive.
    pub body_timeout_secs: f64,
    /// Seconds for a whole request.
    pub request_timeout_secs: f64,
    /// Seconds for a whole upload.
    pub upload_timeout_secs: f64,
    /// Seconds requests in flight may take to finish on shutdown.
    pub shutdown_grace_secs: f64,
    /// Requests per second per client address; 0 is no limit.
    pub rate_limit_per_sec: u32,
    /// Burst above that rate.
    pub rate_limit_burst: u32,
    /// Whether loopback clients are rate-limited too.
    pub rate_limit_loopback: bool,
    /// Protocol steps pending at once.
    pub max_pending_steps: usize,
    /// Protocol steps pending at once per client address.
    pub max_pending_per_client: usize,
    /// Seconds a pending step waits.
    pub pending_step_ttl_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let d = NodeConfig::default();
        Limits {
            max_body_bytes: d.max_body_bytes,
            max_upload_bytes: d.max_upload_bytes,
            max_in_flight: d.max_in_flight,
            max_receiving: d.max_receiving,
            max_uploads: d.max_uploads,
            max_uploads_per_client: d.max_uploads_per_client,
            max_connections: d.max_connections,
            max_connections_per_client: d.max_connections_per_client,
            header_timeout_secs: d.header_timeout.as_secs_f64(),
            body_timeout_secs: d.body_timeout.as_secs_f64(),
            request_timeout_secs: d.request_timeout.as_secs_f64(),
            upload_timeout_secs: d.upload_timeout.as_secs_f64(),
            shutdown_grace_secs: d.shutdown_grace.as_secs_f64(),
            rate_limit_per_sec: d.rate_limit_per_sec,
            rate_limit_burst: d.rate_limit_burst,
            rate_limit_loopback: d.rate_limit_loopback,
            max_pending_steps: d.max_pending_steps,
            max_pending_per_client: d.max_pending_per_client,
            pending_step_ttl_secs: d.pending_step_ttl.as_secs(),
        }
    }
}

/// A time limit from node.toml: at least a millisecond, at most a day
/// (`Duration::from_secs_f64` would panic on a negative or huge value).
fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.001, 86_400.0)
    } else {
        86_400.0
    })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
}
fn default_roles() -> Vec<String> {
    ALL_ROLES.iter().map(|s| s.to_string()).collect()
}
fn default_housekeeping() -> u64 {
    30
}
fn default_crl_days() -> u64 {
    7
}
fn default_log() -> String {
    "text".into()
}

/// The roles a node can host.
pub const ALL_ROLES: &[&str] = &["agency", "cpo", "speed", "stp", "lite", "web"];

impl NodeToml {
    fn defaults(port: u16) -> NodeToml {
        NodeToml {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            public_url: None,
            roles: default_roles(),
            housekeeping_secs: default_housekeeping(),
            crl_days: default_crl_days(),
            log_format: default_log(),
            request_log: false,
            limits: Limits::default(),
        }
    }

    fn load(path: &Path) -> anyhow::Result<NodeToml> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: NodeToml =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for r in &t.roles {
            if !ALL_ROLES.contains(&r.as_str()) {
                bail!(
                    "{}: unknown role {r:?} (roles: {})",
                    path.display(),
                    ALL_ROLES.join(", ")
                );
            }
        }
        if !matches!(t.log_format.as_str(), "text" | "json") {
            bail!("{}: log_format is text or json", path.display());
        }
        Ok(t)
    }

    fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    fn config(&self) -> NodeConfig {
        let l = &self.limits;
        NodeConfig {
            max_body_bytes: l.max_body_bytes,
            max_upload_bytes: l.max_upload_bytes,
            max_in_flight: l.max_in_flight,
            max_receiving: l.max_receiving,
            max_uploads: l.max_uploads,
            max_uploads_per_client: l.max_uploads_per_client,
            max_connections: l.max_connections,
            max_connections_per_client: l.max_connections_per_client,
            header_timeout: secs(l.header_timeout_secs),
            body_timeout: secs(l.body_timeout_secs),
            request_timeout: secs(l.request_timeout_secs),
            upload_timeout: secs(l.upload_timeout_secs),
            shutdown_grace: secs(l.shutdown_grace_secs),
            rate_limit_per_sec: l.rate_limit_per_sec,
            rate_limit_burst: l.rate_limit_burst,
            rate_limit_loopback: l.rate_limit_loopback,
            max_pending_steps: l.max_pending_steps,
            max_pending_per_client: l.max_pending_per_client,
            pending_step_ttl: Duration::from_secs(l.pending_step_ttl_secs.max(1)),
            housekeeping_every: Duration::from_secs(self.housekeeping_secs.max(1)),
            public_url: self.public_url(),
            request_log: self.request_log,
        }
    }
}

fn init_logs(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,agora_node=info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second subscriber (tests calling this twice) is not an error.
    let _ = if json {
        b.json().try_init()
    } else {
        b.with_target(false).try_init()
    };
}

/// Builds the node for `t` on this data directory.
fn build(ctx: &Ctx, t: &NodeToml) -> anyhow::Result<Node> {
    let ks = ctx.load_keystore()?;
    let mut node = Node::new(t.config());
    if t.roles.iter().any(|r| r == "agency") {
        node = node.with(Arc::new(pki_service(ctx, t.crl_days)?));
    }
    if t.roles.iter().any(|r| r == "cpo" || r == "web") {
        let cpo = Arc::new(cpo_service(ctx, &ks)?);
        if t.roles.iter().any(|r| r == "cpo") {
            node = node.with(cpo.clone() as Arc<dyn Service>);
        }
        if t.roles.iter().any(|r| r == "web") {
            node = node.with(Arc::new(agora_node::web::WebService::new(cpo)));
        }
    }
    if t.roles.iter().any(|r| r == "speed") {
        let trust = Box::new(crate::speed::DirSpeedTrust {
            trust_path: ctx.trust_path(),
            crl_dir: ctx.crl_dir(),
        });
        node = node.with(Arc::new(crate::speed::speed_service(ctx, &ks, trust)?));
    }
    if t.roles.iter().any(|r| r == "stp") {
        node = node.with(Arc::new(crate::stp::stp_service(ctx, &ks)?));
    }
    if t.roles.iter().any(|r| r == "lite") {
        node = node.with(Arc::new(crate::lite::lite_service(ctx, &ks)?));
    }
    Ok(node)
}

/// What a node takes before it creates or opens anything: the data
/// directory's node lock (a second node on it is refused) and its port (a
/// port in use is refused), so that a refused start has made nothing.
struct Claimed {
    _lock: std::fs::File,
    listener: std::net::TcpListener,
}

fn claim(ctx: &Ctx, t: &NodeToml) -> anyhow::Result<Claimed> {
    let lock = ctx.lock_for_node()?;
    let listener = std::net::TcpListener::bind(t.listen).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            "the port is in use: is another node running there? (choose another with --port)"
                .to_owned()
        } else {
            e.to_string()
        };
        anyhow::anyhow!("cannot listen on {}: {why}", t.listen)
    })?;
    listener
        .set_nonblocking(true)
        .context("setting the listener non-blocking")?;
    Ok(Claimed {
        _lock: lock,
        listener,
    })
}

fn run_node(
    ctx: &Ctx,
    t: &NodeToml,
    claimed: Claimed,
    banner: impl FnOnce(&str),
) -> anyhow::Result<()> {
    init_logs(t.log_format == "json");
    let node = build(ctx, t)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let Claimed { _lock, listener } = claimed;
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::from_std(listener).context("listening on the port taken")?;
        banner(&t.public_url());
        node.serve(listener, agora_node::shutdown_signal())
            .await
            .context("serving")
    })
}

/// `agora up`: first run creates everything; every run serves every role.
pub fn up(ctx: &Ctx, a: &UpArgs) -> anyhow::Result<()> {
    let t = NodeToml::defaults(a.port);
    let url = t.public_url();
    let claimed = claim(ctx, &t)?;
    let mut created = Vec::new();
    if !ctx.keystore_path().exists() {
        crate::datadir::init_quiet(ctx)?;
        created.push(format!("data directory {}", ctx.dir().display()));
    }
    if crate::agency::agency_names(ctx).is_empty() {
        crate::agency::create(ctx, DEFAULT_AGENCY, 3650, &url, PartyRole::Agency)?;
        created.push(format!("bonding agency {DEFAULT_AGENCY}"));
    }
    created.extend(crate::speed::setup(ctx, &url)?);
    created.extend(crate::stp::setup(ctx)?);
    created.extend(crate::lite::setup(ctx)?);
    let ks = ctx.load_keystore()?;
    let broker = role_keys(&ks, crate::speed::BROKER_KEY)?.id();
    let vendor = role_keys(&ks, crate::speed::VENDOR_KEY)?.id();
    let server = role_keys(&ks, SERVER_KEY)?.peer().id();
    let arbiter = role_keys(&ks, ARBITER_KEY)?.peer().id();
    let agencies: Vec<String> = crate::agency::agency_names(ctx)
        .into_iter()
        .filter(|n| n != crate::speed::SPEED_CA)
        .collect();
    let json = ctx.json;
    let data_dir = ctx.dir().to_path_buf();
    let t = NodeToml {
        log_format: if a.log_json {
            "json".into()
        } else {
            "text".into()
        },
        ..t
    };
    run_node(ctx, &t, claimed, move |url| {
        let text = format!(
            "agora node up at {url}\n\
             {}\
             \x20 data directory  {}\n\
             \x20 bonding agency  {}  (CRLs at {url}/v1/pki/<key id>/crl)\n\
             \x20 CPO arbiter     {arbiter}\n\
             \x20 CPO server      {server}\n\
             \x20 SPEED broker    {broker}  (CA {speed_ca})\n\
             \x20 SPEED vendor    {vendor}  (catalogue: agora speed catalogue)\n\
             \x20 web board       {url}/\n\
             \x20 API             {url}/openapi.json, {url}/healthz, {url}/metrics\n\
             next, in another terminal (same AGORA_PASSPHRASE and data directory):\n\
             \x20 export AGORA_NODE={url}\n\
             \x20 agora key new alice\n\
             \x20 agora agency issue-bond --agency {} --holder alice --amount \"500.00 EUR\" --roles buyer --days 365 --out alice-bond.pem\n\
             \x20 agora cpo draft --buyer alice --bond alice-bond.pem --goods \"A red bicycle\" --price \"120.00 EUR\" --out bicycle.ccpo\n\
             \x20 agora cpo approve bicycle.ccpo --buyer alice --out bicycle.acceptance\n\
             \x20 agora cpo post bicycle.acceptance --buyer alice --out bicycle.posted\n\
             \x20 agora cpo list\n\
             \x20 agora key new carol && agora speed register carol --deposit \"20.00 EUR\" --card carol.card\n\
             \x20 agora speed buy --as carol --product \"{demo}\" --target \"1.00 EUR\" --limit \"1.30 EUR\" --out song.mp3\n\
             \x20 (the README walks through buying and selling step by step)\n\
             stop with Ctrl-C",
            if created.is_empty() {
                String::new()
            } else {
                format!("  created         {}\n", created.join(", "))
            },
            data_dir.display(),
            agencies.join(", "),
            agencies.first().map(String::as_str).unwrap_or(DEFAULT_AGENCY),
            speed_ca = crate::speed::SPEED_CA,
            demo = crate::speed::DEMO_SONG,
        );
        crate::output::emit(
            json,
            &text,
            serde_json::json!({
                "url": url,
                "data_dir": data_dir,
                "agencies": agencies,
                "arbiter": arbiter.to_string(),
                "server": server.to_string(),
                "speed_broker": broker.to_string(),
                "speed_vendor": vendor.to_string(),
                "created": created,
            }),
        );
    })
}

/// `agora serve --config node.toml`.
pub fn serve(ctx: &Ctx, a: &ServeArgs) -> anyhow::Result<()> {
    ctx.require_initialised()?;
    let t = NodeToml::load(&a.config)?;
    let claimed = claim(ctx, &t)?;
    let roles = t.roles.join(", ");
    let json = ctx.json;
    run_node(ctx, &t, claimed, move |url| {
        crate::output::emit(
            json,
            &format!("agora node serving {roles} at {url}"),
            serde_json::json!({ "url": url, "roles": roles }),
        )
    })
}

/// `agora status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Wait up to this many seconds for the node to answer.
    #[arg(long, default_value_t = 0)]
    wait: u64,
}

/// `agora status`: GET /v1/node, optionally waiting for the node to come up.
pub fn status(ctx: &Ctx, a: &StatusArgs) -> anyhow::Result<()> {
    let url = ctx.node.clone().with_context(|| {
        format!("which node? pass --node or set AGORA_NODE (agora up serves http://127.0.0.1:{DEFAULT_PORT})")
    })?;
    let client = agora_client::transport::NodeClient::new(&url)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(a.wait);
    // A spinner on a terminal while the node comes up (nothing otherwise).
    let spinner = indicatif::ProgressBar::new_spinner()
        .with_message(format!("waiting for the node at {url}"));
    let doc: serde_json::Value = loop {
        spinner.tick();
        match client.get_json("/v1/node") {
            Ok(d) => {
                spinner.finish_and_clear();
                break d;
            }
            Err(agora_client::transport::ClientError::Transport(_))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                spinner.finish_and_clear();
                return Err(anyhow::Error::new(e));
            }
        }
    };
    let services = doc["services"]
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let key = |s: &str| {
        doc["services"]["cpo"][s]["key_id"]
            .as_str()
            .unwrap_or("-")
            .to_owned()
    };
    let speed = |s: &str| {
        doc["services"]["speed"][s]["key_id"]
            .as_str()
            .map(|k| format!("\n  SPEED {s:<7}{k}"))
            .unwrap_or_default()
    };
    crate::output::emit(
        ctx.json,
        &format!(
            "agora node at {url}: {services}\n  CPO server   {}\n  CPO arbiter  {}{}{}",
            key("server"),
            key("arbiter"),
            speed("broker"),
            speed("vendor"),
        ),
        doc,
    );
    Ok(())
}
