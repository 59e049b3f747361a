//! `agora`: the command-line tool of the agora marketplace.
//!
//! A thin driver: it parses arguments, reads the data directory (keystore,
//! trust store, SQLite), calls agora-pki / agora-core / agora-store, and
//! prints either a human summary or `--json`. Errors print as one line (and
//! the chain of causes with `--verbose`) with a non-zero exit code.
#![forbid(unsafe_code)]

mod agency;
mod bench;
mod cert;
mod cpo;
mod datadir;
mod evidence;
mod key;
mod lite;
mod mail;
mod node;
mod output;
mod speed;
mod stp;

/// mimalloc instead of glibc's malloc, for the node (`agora up`) and the load
/// tool alike: their many threads allocate small buffers per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  export AGORA_PASSPHRASE='correct horse battery staple'
  agora init
  agora agency create acme-bonding
  agora key new alice
  agora agency issue-bond --agency acme-bonding --holder alice \\
      --amount \"500.00 EUR\" --roles buyer --days 365 --out alice-bond.pem
  agora cert verify alice-bond.pem --price \"120.00 EUR\" --role buyer
  agora agency revoke --agency acme-bonding alice-bond.pem
  agora evidence verify --archive";

/// agora: a secure electronic marketplace. Built so far: Conditional
/// Purchase Orders (`agora cpo`), SPEED purchases (`agora speed`), STP
/// transactions (`agora stp`) and lightweight subscriptions (`agora lite`),
/// with the agencies and certificates they rest on, and a node that serves
/// them (`agora up`).
#[derive(Debug, Parser)]
#[command(name = "agora", version, after_help = EXAMPLES)]
struct Cli {
    /// The data directory: SQLite database, keystore, trust store.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "AGORA_DATA_DIR",
        default_value = "agora-data"
    )]
    data_dir: PathBuf,
    /// Read the keystore passphrase from this file (else $AGORA_PASSPHRASE,
    /// else a prompt on the terminal).
    #[arg(
        long,
        global = true,
        env = "AGORA_PASSPHRASE_FILE",
        help_heading = "Global options"
    )]
    passphrase_file: Option<PathBuf>,
    /// The agora node that the cpo, speed, status and bench commands talk
    /// to, e.g. http://127.0.0.1:7878 (`agora up` prints it). Without it,
    /// the cpo and speed commands run the node's roles in this process on
    /// the data directory, and bench loads the node of the data directory;
    /// `status` needs it. The commands on the data directory alone (init,
    /// key, agency, cert, evidence, up, serve) ignore it.
    #[arg(
        long,
        global = true,
        env = "AGORA_NODE",
        help_heading = "Global options"
    )]
    node: Option<String>,
    /// Where the state is kept: sqlite:PATH (the default is
    /// sqlite:DATA_DIR/agora.db).
    #[arg(
        long,
        global = true,
        env = "AGORA_STORE",
        value_name = "URL",
        help_heading = "Global options"
    )]
    store: Option<String>,
    /// Replace an existing file that --out names; without it a command
    /// refuses, before it does anything, to overwrite one.
    #[arg(long, global = true, help_heading = "Global options")]
    force: bool,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    /// On failure, print the whole chain of causes.
    #[arg(long, short, global = true, help_heading = "Global options")]
    verbose: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the data directory: SQLite database, encrypted keystore with
    /// this node's own keys, empty trust store.
    #[command(after_help = "Example:\n  AGORA_PASSPHRASE=... agora init --data-dir ./agora-data")]
    Init,
    /// Manage keys in the keystore.
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Run a bonding agency (an X.509 CA with an Ed25519 key).
    #[command(subcommand)]
    Agency(agency::AgencyCmd),
    /// Inspect and validate certificates.
    #[command(subcommand)]
    Cert(cert::CertCmd),
    /// Verify signed evidence and the evidence archive.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCmd),
    /// Conditional Purchase Orders: buyers draft, approve and post them;
    /// sellers list, open sessions, bind and bid; awards, notices, bindings,
    /// proofs of delivery; and the same protocols by e-mail (`cpo mail`).
    #[command(subcommand)]
    Cpo(cpo::CpoCmd),
    /// SPEED purchases: register, catalogue, buy (negotiate, pay, decrypt),
    /// receipts, e-purse cards, and the broker's books.
    #[command(subcommand)]
    Speed(speed::SpeedCmd),
    /// STP: multi-party transactions with signed hash-chained contexts, a
    /// send token and a commit authority; escrow; proof bundles.
    #[command(subcommand)]
    Stp(stp::StpCmd),
    /// Lightweight subscriptions: subscribe to a vendor (SKEP), fetch over
    /// SDDP, list receipts, derive your Janus key with a vendor, judge a
    /// dispute over hash-chain receipts.
    #[command(subcommand)]
    Lite(lite::LiteCmd),
    /// The client proxy for browsers and curl: each http:// request to a
    /// lightweight vendor is signed (SDDP) with the key your id and secret
    /// derive (give them as proxy credentials); SKEP on first contact.
    /// Writes nothing to disk.
    Proxy(lite::ProxyArgs),
    /// Start the marketplace on this data directory: every role on one
    /// loopback port, with the web board. Creates what is missing first.
    #[command(after_help = "Example:\n  AGORA_PASSPHRASE=... agora up\n  agora up --port 8080")]
    Up(node::UpArgs),
    /// Run a node with the roles and limits of a configuration file
    /// (docs/NODE.md).
    #[command(after_help = "Example:\n  agora serve --config node.toml")]
    Serve(node::ServeArgs),
    /// What the node at --node (or $AGORA_NODE) hosts; with --wait, wait
    /// until it answers.
    #[command(after_help = "Example:\n  agora --node http://127.0.0.1:7878 status --wait 30")]
    Status(node::StatusArgs),
    /// Load a node started with `agora up` on this data directory, over
    /// loopback only: cpo-post, cpo-browse, cpo-bind, speed-normal,
    /// speed-aggressive, stp-ca or stp-e2e, bounded in requests and time;
    /// prints throughput, latency per protocol step and the crypto bound.
    #[command(
        after_help = "Examples:\n  agora up &\n  agora bench cpo-bind --concurrency 64 --cpos 2000 --duration 10\n  \
        agora bench cpo-post --concurrency 16 --json\n  agora bench cpo-browse --node http://127.0.0.1:7878 --requests 20000\n  agora bench speed-normal --concurrency 64 --duration 10\n  \
        agora bench stp-ca --concurrency 64 --transactions 20000\n  agora bench stp-e2e --concurrency 32 --duration 10"
    )]
    Bench(bench::BenchArgs),
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let ctx = datadir::Ctx::new(cli);
    match &cli.cmd {
        Cmd::Init => datadir::init(&ctx),
        Cmd::Key(c) => key::run(&ctx, c),
        Cmd::Agency(c) => agency::run(&ctx, c),
        Cmd::Cert(c) => cert::run(&ctx, c),
        Cmd::Evidence(c) => evidence::run(&ctx, c),
        Cmd::Cpo(c) => cpo::run(&ctx, c),
        Cmd::Speed(c) => speed::run(&ctx, c),
        Cmd::Stp(c) => stp::run(&ctx, c),
        Cmd::Lite(c) => lite::run(&ctx, c),
        Cmd::Proxy(a) => lite::proxy(&ctx, a),
        Cmd::Up(a) => node::up(&ctx, a),
        Cmd::Serve(a) => node::serve(&ctx, a),
        Cmd::Status(a) => node::status(&ctx, a),
        Cmd::Bench(a) => bench::run(&ctx, a),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::report_error(&e, cli.json, cli.verbose);
            ExitCode::FAILURE
        }
    }
}
