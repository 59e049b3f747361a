//! `agora cert show | verify`: certificates of the agora profile.

use crate::datadir::Ctx;
use agora_core::{Money, Timestamp};
use agora_pki::{parse_certificate, Crl, ParsedCert};
use agora_pki::{validate_bond, validate_identity, BondRequirement, TrustAnchors};
use agora_pki::{PartyRole, Role};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// Largest certificate or CRL file read, in bytes.
const MAX_FILE_LEN: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Print what a certificate says (no validation).
    #[command(after_help = "Example:\n  agora cert show alice-bond.pem --json")]
    Show {
        /// The certificate, PEM or DER.
        file: PathBuf,
    },
    /// Validate a bond or identity certificate: chain to a trusted agency,
    /// dates, revocation (a current CRL is required), and for a bond the
    /// amount, role and conditions asked for.
    #[command(
        after_help = "Examples:\n  agora cert verify alice-bond.pem --price \"120.00 EUR\" --role buyer\n  \
        agora cert verify pam-bond.pem --role seller --server <key-id> --crl acme.crl.pem"
    )]
    Verify {
        /// The certificate, PEM or DER.
        file: PathBuf,
        /// The bond must cover this price, e.g. "120.00 EUR".
        #[arg(long, allow_hyphen_values = true)]
        price: Option<Money>,
        /// The bond must cover this role (buyer or seller); for an identity
        /// certificate, the party's role (arbiter, server, ...).
        #[arg(long)]
        role: Option<String>,
        /// The bond must allow this CPO server (key id, hex).
        #[arg(long)]
        server: Option<String>,
        /// The bond must allow this arbiter (key id, hex).
        #[arg(long)]
        arbiter: Option<String>,
        /// CRLs to use besides those in the data directory.
        #[arg(long = "crl")]
        crls: Vec<PathBuf>,
        /// Trusted agency certificates besides the trust store's.
        #[arg(long = "agency-cert")]
        agency_certs: Vec<PathBuf>,
        /// Validate as of this time (Unix seconds) instead of now.
        #[arg(long)]
        at: Option<u64>,
    },
}

/// A Unix time as RFC 3339 UTC.
pub fn fmt_time(t: Timestamp) -> String {
    i64::try_from(t.secs())
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{}", t.secs()))
}

/// A time as a person or a script gives it: Unix seconds (`1767225600`),
/// RFC 3339 (`2026-12-07T14:00:00Z`), or a date (`2026-12-07`, midnight
/// UTC).
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Timestamp)
            .map_err(|_| format!("{s:?}: too large for a time"));
    }
    let at = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| {
            format!("{s:?} is not a time: give 2026-12-07, 2026-12-07T14:00:00Z or Unix seconds")
        })?;
    u64::try_from(at.unix_timestamp())
        .map(Timestamp)
        .map_err(|_| format!("{s:?} is before 1970"))
}

fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(agora_client::datadir::read_at_most(path, MAX_FILE_LEN)?)
}

/// PEM or DER of the given label from a file.
fn read_der(path: &Path, label: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = read_limited(path)?;
    if bytes.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(&bytes).context("PEM file is not UTF-8")?;
        Ok(agora_pki::pem::decode(text, label)
            .with_context(|| format!("reading {}", path.display()))?)
    } else {
        Ok(bytes)
    }
}

pub fn read_cert_der(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_der(path, "CERTIFICATE")
}

pub fn read_crl(path: &Path) -> anyhow::Result<Crl> {
    let der = read_der(path, "X509 CRL")?;
    agora_pki::parse_crl(&der).with_context(|| format!("parsing CRL {}", path.display()))
}

/// Every CRL in the data directory, plus `extra`.
pub fn load_crls(ctx: &Ctx, extra: &[PathBuf]) -> anyhow::Result<Vec<Crl>> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(ctx.crl_dir()) {
        for e in dir.flatten() {
            if e.path().extension().is_some_and(|x| x == "pem") {
                out.push(read_crl(&e.path())?);
            }
        }
    }
    for p in extra {
        out.push(read_crl(p)?);
    }
    Ok(out)
}

fn describe(c: &ParsedCert) -> (String, serde_json::Value) {
    let mut text = format!(
        "serial       {}\nsubject      {}\nkey id       {}\nvalid        {} .. {}\n",
        c.serial,
        c.common_name.as_deref().unwrap_or("-"),
        c.key_id(),
        fmt_time(c.not_before),
        fmt_time(c.not_after)
    );
    let mut json = serde_json::json!({
        "serial": c.serial.to_string(),
        "subject": c.common_name,
        "key_id": c.key_id().to_string(),
        "not_before": c.not_before.secs(),
        "not_after": c.not_after.secs(),
        "is_ca": c.is_ca,
        "issuer_key_id": c.authority_key_id.as_ref().map(hex::encode),
        "crl_uris": c.crl_uris,
    });
    if let Some(aki) = &c.authority_key_id {
        text.push_str(&format!("issuer key   {}\n", hex::encode(aki)));
    }
    if c.is_ca {
        text.push_str("kind         certification authority\n");
        json["kind"] = "ca".into();
    }
    if let Some(b) = &c.bond {
        let roles: Vec<&str> = b
            .roles
            .iter()
            .map(|r| crate::agency::role_name(*r))
            .collect();
        let ids = |v: &[agora_core::KeyId]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        text.push_str(&format!(
            "kind         bond\namount       {}\nroles        {}\nX25519 key   {}\nservers      {}\narbiters     {}\n",
            b.amount,
            roles.join(", "),
            b.holder_x25519.key_id(),
            if b.conditions.servers.is_empty() { "any".into() } else { ids(&b.conditions.servers).join(", ") },
            if b.conditions.arbiters.is_empty() { "any".into() } else { ids(&b.conditions.arbiters).join(", ") },
        ));
        json["kind"] = "bond".into();
        json["bond"] = serde_json::json!({
            "amount": b.amount.to_string(),
            "amount_cents": b.amount.cents,
            "currency": b.amount.currency.as_str(),
            "roles": roles,
            "x25519_key_id": b.holder_x25519.key_id().to_string(),
            "servers": ids(&b.conditions.servers),
            "arbiters": ids(&b.conditions.arbiters),
        });
    }
    if let Some(i) = &c.identity {
        text.push_str(&format!(
            "kind         identity\nrole         {}\n",
            party_role_name(i.role)
        ));
        json["kind"] = "identity".into();
        json["identity"] = serde_json::json!({ "role": party_role_name(i.role) });
    }
    for u in &c.crl_uris {
        text.push_str(&format!("CRL          {u}\n"));
    }
    (text.trim_end().to_owned(), json)
}

fn party_role_name(r: PartyRole) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{r:?}"))
}

fn parse_party_role(s: &str) -> anyhow::Result<PartyRole> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .with_context(|| format!("unknown party role {s:?}"))
}

pub fn run(ctx: &Ctx, cmd: &CertCmd) -> anyhow::Result<()> {
    match cmd {
        CertCmd::Show { file } => {
            let der = read_cert_der(file)?;
            let c =
                parse_certificate(&der).with_context(|| format!("parsing {}", file.display()))?;
            let (text, json) = describe(&c);
            crate::output::emit(ctx.json, &text, json);
        }
        CertCmd::Verify {
            file,
            price,
            role,
            server,
            arbiter,
            crls,
            agency_certs,
            at,
        } => {
            let der = read_cert_der(file)?;
            let parsed =
                parse_certificate(&der).with_context(|| format!("parsing {}", file.display()))?;
            let trust = ctx.load_trust()?;
            let mut anchors: TrustAnchors = trust.agency_anchors();
            for p in agency_certs {
                anchors.add_der(&read_cert_der(p)?)?;
            }
            let crls = load_crls(ctx, crls)?;
            let now = at.map(Timestamp).unwrap_or_else(|| ctx.now());
            let name = file.display().to_string();
            if let Some(bond) = &parsed.bond {
                let role = match role.as_deref() {
                    Some("buyer") => Role::Buyer,
                    Some("seller") => Role::Seller,
                    Some(other) => bail!("unknown bond role {other:?} (buyer or seller)"),
                    // No role asked: any role the bond names will do.
                    None => *bond.roles.first().context("bond names no role")?,
                };
                let req = BondRequirement {
                    price: *price,
                    role,
                    server: server
                        .as_deref()
                        .map(agora_core::KeyId::from_hex)
                        .transpose()?,
                    arbiter: arbiter
                        .as_deref()
                        .map(agora_core::KeyId::from_hex)
                        .transpose()?,
                };
                let v = validate_bond(&der, &anchors, &crls, now, &req)
                    .with_context(|| format!("{name} refused"))?;
                crate::output::emit(
                    ctx.json,
                    &format!(
                        "{name}: valid bond of {} for {} (holder {}, agency {}, until {})",
                        v.amount(),
                        crate::agency::role_name(role),
                        v.holder_key_id(),
                        v.agency(),
                        fmt_time(v.not_after())
                    ),
                    serde_json::json!({
                        "valid": true,
                        "kind": "bond",
                        "holder_key_id": v.holder_key_id().to_string(),
                        "agency_key_id": v.agency().to_string(),
                        "amount": v.amount().to_string(),
                        "serial": v.serial().to_string(),
                    }),
                );
            } else {
                if price.is_some() || server.is_some() || arbiter.is_some() {
                    bail!("{name} is not a bond certificate: --price, --server and --arbiter apply to bonds only");
                }
                let role = role.as_deref().map(parse_party_role).transpose()?;
                let v = validate_identity(&der, &anchors, &crls, now, role)
                    .with_context(|| format!("{name} refused"))?;
                crate::output::emit(
                    ctx.json,
                    &format!(
                        "{name}: valid identity certificate of {} ({}), until {}",
                        v.name(),
                        party_role_name(v.role()),
                        fmt_time(v.not_after())
                    ),
                    serde_json::json!({
                        "valid": true,
                        "kind": "identity",
                        "name": v.name(),
                        "role": party_role_name(v.role()),
                        "serial": v.serial().to_string(),
                    }),
                );
            }
        }
    }
    Ok(())
}
