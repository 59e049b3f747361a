//! `agora agency create | issue-bond | revoke | crl`: a bonding agency run
//! from this data directory. The agency's key is in the keystore, its
//! certificate in `agencies/<name>/agency.pem`, its register (issued,
//! revoked, CRL numbers) in SQLite, and every certificate and CRL it signs
//! goes into the evidence archive.

use crate::datadir::Ctx;
use agora_core::crypto::SigningKey;
use agora_core::{KeyId, Money};
use agora_pki::registry::{IssuedKind, RevokeOutcome};
use agora_pki::{Agency, BondParams, RevocationReason};
use agora_pki::{Conditions, PartyRole, Role};
use agora_pki::{Crl, Serial};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::PathBuf;

const DAY_SECS: u64 = 86_400;
/// Where agencies say their CRLs are published, unless told otherwise: the
/// address `agora up` will serve them from.
use agora_client::datadir::names::DEFAULT_CRL_BASE;
use agora_client::datadir::{agency_key_name, check_name};

#[derive(Debug, Subcommand)]
pub enum AgencyCmd {
    /// Create a bonding agency: a key, a self-signed CA certificate, an
    /// entry in the trust store, and a first (empty) CRL.
    #[command(after_help = "Example:\n  agora agency create acme-bonding --days 3650")]
    Create {
        /// The agency's name (the CA certificate's subject CN).
        name: String,
        /// Days the CA certificate is valid.
        #[arg(long, default_value_t = 3650)]
        days: u64,
        /// Base URL of the node that publishes the CRL; certificates name
        /// BASE/v1/pki/AGENCY-KEY-ID/crl as their CRL distribution point.
        #[arg(long, default_value = DEFAULT_CRL_BASE)]
        crl_base: String,
    },
    /// Issue a bond certificate to a holder's keys.
    #[command(
        after_help = "Examples:\n  agora agency issue-bond --agency acme-bonding --holder alice \\\n      \
        --amount \"500.00 EUR\" --roles buyer --days 365 --out alice-bond.pem\n  \
        agora agency issue-bond --agency acme-bonding --holder-ed25519 pam.ed25519.pem \\\n      \
        --holder-x25519 pam.x25519.pem --amount \"2000 EUR\" --roles seller --out pam-bond.pem"
    )]
    IssueBond {
        /// The issuing agency.
        #[arg(long)]
        agency: String,
        /// A key pair in this keystore (see `agora key new`).
        #[arg(long, conflicts_with_all = ["holder_ed25519", "holder_x25519"])]
        holder: Option<String>,
        /// The holder's Ed25519 public key (PEM), for a holder elsewhere.
        #[arg(long, requires = "holder_x25519")]
        holder_ed25519: Option<PathBuf>,
        /// The holder's X25519 public key (PEM).
        #[arg(long, requires = "holder_ed25519")]
        holder_x25519: Option<PathBuf>,
        /// The amount the bond covers, e.g. "500.00 EUR".
        #[arg(long, allow_hyphen_values = true)]
        amount: Money,
        /// Roles covered: buyer, seller (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Days the bond is valid, from now.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// Allowed CPO server (key id, hex); repeat for several; none = any.
        #[arg(long = "server")]
        servers: Vec<String>,
        /// Allowed arbiter (key id, hex); repeat for several; none = any.
        #[arg(long = "arbiter")]
        arbiters: Vec<String>,
        /// Write the certificate (PEM) here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a certificate this agency issued, and publish a new CRL.
    #[command(
        after_help = "Example:\n  agora agency revoke --agency acme-bonding alice-bond.pem --reason key-compromise"
    )]
    Revoke {
        /// The issuing agency.
        #[arg(long)]
        agency: String,
        /// The certificate (PEM file) or its serial number (hex).
        target: String,
        /// key-compromise, superseded, affiliation-changed,
        /// cessation-of-operation, privilege-withdrawn or unspecified.
        #[arg(long, default_value = "unspecified")]
        reason: RevocationReason,
    },
    /// Issue and publish a new CRL (into the data directory, and to --out).
    #[command(after_help = "Example:\n  agora agency crl --agency acme-bonding --out crl.pem")]
    Crl {
        /// The issuing agency.
        #[arg(long)]
        agency: String,
        /// Days until nextUpdate.
        #[arg(long, default_value_t = 7)]
        days: u64,
        /// Also write the CRL (PEM) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_role(s: &str) -> anyhow::Result<Role> {
    match s.trim() {
        "buyer" => Ok(Role::Buyer),
        "seller" => Ok(Role::Seller),
        other => bail!("unknown role {other:?} (buyer or seller)"),
    }
}

pub fn parse_key_ids(list: &[String]) -> anyhow::Result<Vec<KeyId>> {
    list.iter()
        .map(|s| KeyId::from_hex(s.trim()).with_context(|| format!("key id {s:?}")))
        .collect()
}

/// Issue the agency's next CRL, keep it as the current one in the data
/// directory, and archive it.
pub(crate) fn publish_crl(ctx: &Ctx, agency: &Agency, days: u64) -> anyhow::Result<Crl> {
    Ok(agora_node::pki::publish_crl(
        &ctx.store()?,
        agency,
        &ctx.crl_dir(),
        days,
        ctx.now(),
    )?)
}

/// The names of the agencies run from this data directory.
pub(crate) fn agency_names(ctx: &Ctx) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(ctx.dir().join("agencies"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("agency.pem").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

pub fn run(ctx: &Ctx, cmd: &AgencyCmd) -> anyhow::Result<()> {
    match cmd {
        AgencyCmd::Create {
            name,
            days,
            crl_base,
        } => {
            let agency = create(ctx, name, *days, crl_base, PartyRole::Agency)?;
            let dir = ctx.agency_dir(name);
            crate::output::emit(
                ctx.json,
                &format!(
                    "created bonding agency {name}\n  key id       {}\n  certificate  {}\n  CRL          {}\n\
                     it is pinned in the trust store as an agency",
                    agency.key_id(),
                    dir.join("agency.pem").display(),
                    agency.crl_uri(crl_base)
                ),
                serde_json::json!({
                    "name": name,
                    "key_id": agency.key_id().to_string(),
                    "certificate": dir.join("agency.pem"),
                    "crl_uri": agency.crl_uri(crl_base),
                }),
            );
        }
        AgencyCmd::IssueBond {
            agency,
            holder,
            holder_ed25519,
            holder_x25519,
            amount,
            roles,
            days,
            servers,
            arbiters,
            out,
        } => {
            ctx.check_out(out)?;
            let ag = ctx.agency(agency)?;
            let (holder_key, holder_x) = match (holder, holder_ed25519, holder_x25519) {
                (Some(name), _, _) => crate::key::public_pair(&ctx.load_keystore()?, name)?,
                (None, Some(ed), Some(x)) => {
                    let ed = std::fs::read_to_string(ed)
                        .with_context(|| format!("reading {}", ed.display()))?;
                    let x = std::fs::read_to_string(x)
                        .with_context(|| format!("reading {}", x.display()))?;
                    (
                        agora_pki::pem::ed25519_from_public_pem(&ed)?,
                        agora_pki::pem::x25519_from_public_pem(&x)?,
                    )
                }
                _ => {
                    bail!("name the holder: --holder NAME, or --holder-ed25519 and --holder-x25519")
                }
            };
            let roles = roles
                .iter()
                .map(|r| parse_role(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let now = ctx.now();
            let not_after = now.plus_secs(days.max(&1) * DAY_SECS);
            let mut rng = agora_core::crypto::os_rng();
            let issued = ag.issue_bond(
                &BondParams {
                    holder: holder_key,
                    holder_x25519: holder_x,
                    amount: *amount,
                    roles: roles.clone(),
                    conditions: Conditions {
                        servers: parse_key_ids(servers)?,
                        arbiters: parse_key_ids(arbiters)?,
                    },
                    not_before: now,
                    not_after,
                    crl_uri: ag.crl_uri(&ctx.crl_base(agency)),
                },
                &mut rng,
            )?;
            let store = ctx.store()?;
            agora_client::datadir::record_issued(
                &store,
                &ag,
                &issued,
                IssuedKind::Bond,
                holder_key.key_id(),
                now,
                not_after,
            )?;
            crate::datadir::write_file_atomic(out, issued.to_pem().as_bytes())?;
            let role_names: Vec<&str> = roles.iter().map(|r| role_name(*r)).collect();
            crate::output::emit(
                ctx.json,
                &format!(
                    "issued bond certificate {}\n  holder   {}\n  covers   {} as {}\n  until    {}\n  written  {}",
                    issued.serial,
                    holder_key.key_id(),
                    amount,
                    role_names.join(", "),
                    crate::cert::fmt_time(not_after),
                    out.display()
                ),
                serde_json::json!({
                    "serial": issued.serial.to_string(),
                    "holder_key_id": holder_key.key_id().to_string(),
                    "amount": amount.to_string(),
                    "roles": role_names,
                    "not_after": not_after.secs(),
                    "file": out,
                }),
            );
        }
        AgencyCmd::Revoke {
            agency,
            target,
            reason,
        } => {
            let ag = ctx.agency(agency)?;
            let serial = target_serial(target)?;
            let now = ctx.now();
            let outcome =
                ctx.store()?
                    .agency_registry()
                    .revoke(&ag.key_id(), &serial, *reason, now)?;
            let crl = publish_crl(ctx, &ag, 7)?;
            let what = match outcome {
                RevokeOutcome::Revoked => "revoked",
                RevokeOutcome::AlreadyRevoked => "was already revoked",
            };
            crate::output::emit(
                ctx.json,
                &format!(
                    "{serial} {what} ({reason}); published CRL number {} with {} entries",
                    crl.crl_number.unwrap_or_default(),
                    crl.revoked.len()
                ),
                serde_json::json!({
                    "serial": serial.to_string(),
                    "outcome": what,
                    "reason": reason.as_str(),
                    "crl_number": crl.crl_number,
                }),
            );
        }
        AgencyCmd::Crl { agency, days, out } => {
            if let Some(out) = out {
                ctx.check_out(out)?;
            }
            let ag = ctx.agency(agency)?;
            let crl = publish_crl(ctx, &ag, *days)?;
            if let Some(out) = out {
                crate::datadir::write_file_atomic(out, crl.to_pem().as_bytes())?;
            }
            crate::output::emit(
                ctx.json,
                &format!(
                    "CRL number {} of {agency}: {} revoked, next update {}{}",
                    crl.crl_number.unwrap_or_default(),
                    crl.revoked.len(),
                    crl.next_update
                        .map(crate::cert::fmt_time)
                        .unwrap_or_default(),
                    out.as_ref()
                        .map(|o| format!(", written to {}", o.display()))
                        .unwrap_or_default()
                ),
                serde_json::json!({
                    "crl_number": crl.crl_number,
                    "revoked": crl.revoked.iter().map(|r| r.serial.to_string()).collect::<Vec<_>>(),
                    "next_update": crl.next_update.map(|t| t.secs()),
                    "file": out,
                }),
            );
        }
    }
    Ok(())
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Buyer => "buyer",
        Role::Seller => "seller",
    }
}

/// A serial from a certificate file or from hex.
fn target_serial(target: &str) -> anyhow::Result<Serial> {
    let path = std::path::Path::new(target);
    if path.exists() {
        let der = crate::cert::read_cert_der(path)?;
        return Ok(agora_pki::parse_certificate(&der)?.serial);
    }
    Serial::from_hex(target)
        .with_context(|| format!("{target:?} is neither a certificate file nor a serial in hex"))
}

/// Creates agency `name` here: its key in the keystore, its certificate,
/// its CRL base, pinned in the trust store, with a first CRL.
/// Creates a CA run from this data directory: a bonding agency
/// ([`PartyRole::Agency`]) or another certification authority (the SPEED CA,
/// [`PartyRole::Ca`]), pinned in the trust store under that role.
pub(crate) fn create(
    ctx: &Ctx,
    name: &str,
    days: u64,
    crl_base: &str,
    role: PartyRole,
) -> anyhow::Result<Agency> {
    check_name(name)?;
    let _lock = ctx.lock_for_update()?;
    let mut ks = ctx.load_keystore()?;
    let mut trust = ctx.load_trust()?;
    if ks.ed25519(&agency_key_name(name)).is_some() || ctx.agency_dir(name).exists() {
        bail!("an agency named {name:?} already exists here");
    }
    let mut rng = agora_core::crypto::os_rng();
    let key = SigningKey::generate(&mut rng);
    let now = ctx.now();
    let agency = Agency::create(
        name,
        SigningKey::from_seed(&key.to_seed()),
        now,
        now.plus_secs(days.max(1) * DAY_SECS),
        &mut rng,
    )?;
    ks.insert_ed25519(&agency_key_name(name), key)?;
    ctx.save_keystore(&ks)?;
    let dir = ctx.agency_dir(name);
    crate::datadir::write_file_atomic(&dir.join("crl-base"), crl_base.as_bytes())?;
    crate::datadir::write_file_atomic(
        &dir.join("agency.pem"),
        agency.certificate_pem().as_bytes(),
    )?;
    trust.add_ca(name, role, agency.certificate_der())?;
    ctx.save_trust(&trust)?;
    publish_crl(ctx, &agency, 7)?;
    Ok(agency)
}
