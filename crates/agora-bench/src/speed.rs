//! `speed-normal`, `speed-aggressive`: N synthetic SPEED customers each
//! buy the demo vendor's 16-byte product ([`DEMO_KEY`], fixed price) over
//! and over, paying from their accounts. Normal mode: NegotiationRequest
//! (accepting the first offer), Handshake and the delivery, PaymentOrder
//! and the receipt (three round trips); aggressive mode: ProductRequest
//! and the delivery, PaymentOrder and the receipt (two). Each product is
//! decrypted with the receipt's K and compared with the vendor's file.
//! Throughput = purchases completed per second.
//!
//! The customers are registered as `agora speed register` would: an
//! identity certificate of the data directory's SPEED CA (recorded in its
//! register, so it can be revoked; valid for the run's length plus an
//! hour) and an account at the broker with a deposit from the cash
//! account, enough for the most purchases the run's limits allow; their
//! keys live only in this process. At the end the bench checks the money:
//! the ledger still sums to zero, and the vendor's account grew by exactly
//! the price times the purchases paid, which is what the customers spent;
//! a broken rule exits non-zero like a CPO bound twice. Then what is left
//! on the customers' accounts goes back to the cash account.

use crate::bound::Window;
use crate::race::{race, Limits};
use crate::report::{Outcome, Setup};
use crate::stats::{merge_all, OpError, Tally};
use crate::{fresh_keys, in_parallel, warm_clients_at, BenchArgs, Scenario, REGISTRARS};
use agora_client::datadir::names::{BROKER_KEY, CASH_EUR, DEMO_KEY, SPEED_CA, VENDOR_KEY};
use agora_client::datadir::{issue_identity, read_at_most, role_keys, DataDir};
use agora_client::speed::{
    HttpSpeed, Negotiated, SpeedClient, SpeedClientError, SpeedTransport, Upload, VendorReply,
};
use agora_client::transport::{ClientError, NodeClient};
use agora_core::crypto::{os_rng, random_bytes, Rng};
use agora_core::wire::tags;
use agora_core::{Currency, Money, Timestamp};
use agora_node::endpoint::message_tag;
use agora_node::pending::StepId;
use agora_pki::{Agency, IdentityParams, PartyRole};
use agora_speed::customer::Identity;
use agora_speed::ledger::{Account, AccountKind, JournalEntry, Ledger, Posting};
use agora_speed::strategy::AcceptFirst;
use agora_speed::{AccountNumber, PaymentOrderId, Peer};
use anyhow::{bail, Context};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every SPEED purchase buys: the demo catalogue's 16-byte key at its
/// fixed price (`agora up` makes it), so that a purchase costs the
/// protocol, not the bulk encryption.
pub(crate) const SPEED_PRODUCT: &str = DEMO_KEY;
/// Largest product the bench buys: it keeps each delivery in memory.
const MAX_SPEED_PRODUCT_LEN: u64 = 64 * 1024;
/// Purchases per second one customer could make at most, to size the
/// deposits: a purchase is three round trips and some twenty public-key
/// operations, well over 100 µs on any machine. A customer whose deposit
/// runs out anyway is refused "insufficient funds", an error of the report.
const MAX_PURCHASES_PER_SEC_PER_CUSTOMER: u64 = 10_000;

/// How a SPEED scenario buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpeedMode {
    /// NegotiationRequest, Handshake and delivery, PaymentOrder.
    Normal,
    /// ProductRequest and delivery, PaymentOrder.
    Aggressive,
}

impl SpeedMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SpeedMode::Normal => "normal",
            SpeedMode::Aggressive => "aggressive",
        }
    }
}

fn euro() -> anyhow::Result<Currency> {
    Ok(Currency::new("EUR")?)
}

/// What the SPEED scenarios work with: the node's vendor and broker (this
/// data directory's, as the node serves them), the product, and the
/// ledger, CA and trust of the data directory.
pub(crate) struct SpeedEnv {
    pub(crate) url: String,
    pub(crate) client: NodeClient,
    pub(crate) vendor: Peer,
    pub(crate) broker: Peer,
    /// The vendor's account at the broker, whose balance the bench checks.
    pub(crate) vendor_account: AccountNumber,
    /// The product as the vendor's file holds it: every purchase must
    /// decrypt to it.
    pub(crate) product: Vec<u8>,
    pub(crate) price: Money,
    pub(crate) store: agora_store::Stores,
    pub(crate) ledger: std::sync::Arc<dyn Ledger>,
    /// The SPEED CA, which certifies the synthetic customers.
    pub(crate) ca: Agency,
    pub(crate) crl_uri: String,
    /// How long the customers' certificates last.
    pub(crate) life_secs: u64,
}

impl SpeedEnv {
    pub(crate) fn load(
        dir: &DataDir,
        a: &BenchArgs,
        url: String,
        mode: SpeedMode,
    ) -> anyhow::Result<SpeedEnv> {
        let ks = dir.load_keystore()?;
        let broker = role_keys(&ks, BROKER_KEY)
            .context("this data directory has no SPEED broker (run `agora up` on it)")?
            .peer();
        let vendor = role_keys(&ks, VENDOR_KEY)
            .context("this data directory has no SPEED vendor (run `agora up` on it)")?
            .peer();
        drop(ks);
        // The node must be the one of this data directory: the bench pays
        // into the ledger here and checks it.
        let client = NodeClient::new(&url)?;
        let node: serde_json::Value = client
            .get_json("/v1/node")
            .with_context(|| format!("is a node running at {url}? (agora up)"))?;
        let speed = &node["services"]["speed"];
        let served = |role: &str| speed[role]["key_id"].as_str().map(str::to_owned);
        if served("broker") != Some(broker.id().to_string())
            || served("vendor") != Some(vendor.id().to_string())
        {
            bail!(
                "the node at {url} does not serve the SPEED broker and vendor of data directory {} \
                 (start it with `agora up` on the same --data-dir)",
                dir.dir().display()
            );
        }
        let products = dir.catalogue()?.products;
        let p = products
            .iter()
            .find(|p| p.id == SPEED_PRODUCT)
            .with_context(|| {
                format!("the catalogue of this data directory has no {SPEED_PRODUCT:?} (agora up makes it)")
            })?;
        if p.rule.floor != p.rule.list {
            bail!("{SPEED_PRODUCT:?} is negotiable here: the bench buys it at a fixed price");
        }
        let product = read_at_most(&p.path, MAX_SPEED_PRODUCT_LEN)?;
        let price = p.rule.list;
        if price.currency != euro()? || price.cents == 0 {
            bail!("{SPEED_PRODUCT:?} costs {price}: the bench pays from euro accounts");
        }
        let cat: serde_json::Value = client.get_json("/v1/speed/catalogue")?;
        let listed = cat["products"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["product_id"] == SPEED_PRODUCT))
            .with_context(|| format!("the node's vendor does not sell {SPEED_PRODUCT:?}"))?;
        if listed["size"].as_u64() != Some(product.len() as u64)
            || listed["list_price"].as_str() != Some(price.to_string().as_str())
        {
            bail!(
                "the node's catalogue differs from this data directory's for {SPEED_PRODUCT:?} \
                 (restart `agora up`)"
            );
        }
        if mode == SpeedMode::Aggressive && listed["aggressive"].as_bool() != Some(true) {
            bail!("the node's vendor does not sell {SPEED_PRODUCT:?} in aggressive mode");
        }
        let store = dir.store()?;
        let ledger = store.ledger();
        let eur = euro()?;
        let mut accounts: Vec<Account> = ledger
            .accounts_of(&vendor.id())?
            .into_iter()
            .filter(|acc| acc.kind == AccountKind::Vendor && acc.currency == eur)
            .collect();
        if accounts.len() != 1 {
            bail!(
                "the vendor has {} euro accounts at the broker; the bench checks one",
                accounts.len()
            );
        }
        let vendor_account = accounts.remove(0).number;
        let ca = dir
            .agency(SPEED_CA)
            .context("this data directory runs no SPEED CA (it is made by `agora up`)")?;
        let crl_uri = ca.crl_uri(&dir.crl_base(SPEED_CA));
        Ok(SpeedEnv {
            url,
            client,
            vendor,
            broker,
            vendor_account,
            product,
            price,
            store,
            ledger,
            ca,
            crl_uri,
            life_secs: a.duration + 3600,
        })
    }

    pub(crate) fn say(&self, what: &str) {
        eprintln!("{what}");
    }

    pub(crate) fn price_cents(&self) -> anyhow::Result<i64> {
        Ok(i64::try_from(self.price.cents)?)
    }

    /// Moves `cents` from one account to the others' `(account, cents)`
    /// in one journal entry.
    pub(crate) fn transfer(
        &self,
        from: &AccountNumber,
        to: &[(AccountNumber, i64)],
        memo: &str,
    ) -> anyhow::Result<()> {
        let sum: i64 = to.iter().map(|(_, c)| c).sum();
        let mut postings = vec![Posting {
            account: from.clone(),
            cents: -sum,
        }];
        postings.extend(to.iter().map(|(account, cents)| Posting {
            account: account.clone(),
            cents: *cents,
        }));
        self.ledger.post(&JournalEntry {
            id: random_bytes(&mut os_rng()),
            at: Timestamp::now_from_system_clock(),
            memo: memo.to_owned(),
            postings,
        })?;
        Ok(())
    }

    /// A new customer, as `agora speed register` makes one: an identity
    /// certificate of the SPEED CA, recorded in its register (so that it
    /// can be revoked) and archived, and an account at the broker with a
    /// deposit of `deposit_cents` from the cash account.
    pub(crate) fn register(
        &self,
        deposit_cents: i64,
        rng: &mut impl Rng,
    ) -> anyhow::Result<SpeedCustomer> {
        let keys = fresh_keys(rng);
        let now = Timestamp::now_from_system_clock();
        let not_after = now.plus_secs(self.life_secs);
        let short = keys.id().to_string()[..16].to_owned();
        let issued = issue_identity(
            &self.store,
            &self.ca,
            &IdentityParams {
                name: format!("agora bench customer {short}"),
                key: keys.sign.verifying_key(),
                role: PartyRole::Customer,
                x25519: Some(keys.enc.public()),
                not_before: now.minus_secs(60),
                not_after,
                crl_uri: self.crl_uri.clone(),
            },
            now,
            rng,
        )?;
        let account = AccountNumber::new(&format!("C-BENCH-{short}"))?;
        self.ledger.open_account(&Account {
            number: account.clone(),
            owner: keys.id(),
            kind: AccountKind::Customer,
            currency: euro()?,
            allow_credit: false,
        })?;
        let cash = AccountNumber::new(CASH_EUR)?;
        self.transfer(
            &cash,
            &[(account.clone(), deposit_cents)],
            "agora bench: deposit",
        )?;
        Ok(SpeedCustomer {
            id: Identity {
                keys,
                cert: issued.der,
            },
            account,
            deposit_cents,
        })
    }

    /// Registers `n` customers, [`REGISTRARS`] at a time (setup).
    pub(crate) fn register_many(
        &self,
        n: usize,
        deposit_cents: i64,
    ) -> anyhow::Result<(Vec<SpeedCustomer>, Duration)> {
        self.say(&format!(
            "setup: registering {n} SPEED customers (certificate, account, deposit of {:.2} EUR each)...",
            deposit_cents as f64 / 100.0
        ));
        let t0 = Instant::now();
        let all = in_parallel(n, REGISTRARS, |_| {
            self.register(deposit_cents, &mut os_rng())
        })
        .context("setup: registering a SPEED customer")?;
        Ok((all, t0.elapsed()))
    }

    /// What is left on the customers' accounts goes back to the cash
    /// account (after the run, so that their deposits do not pile up in
    /// the books). Returns the cents moved.
    pub(crate) fn pay_out(&self, left: &[(AccountNumber, i64)]) -> anyhow::Result<i64> {
        let cash = AccountNumber::new(CASH_EUR)?;
        let mut moved = 0;
        // One entry holds at most 16 postings: 15 customers and the cash.
        for chunk in left
            .iter()
            .filter(|(_, c)| *c > 0)
            .collect::<Vec<_>>()
            .chunks(agora_speed::ledger::MAX_POSTINGS - 1)
        {
            let to: Vec<(AccountNumber, i64)> =
                chunk.iter().map(|(a, c)| (a.clone(), -c)).collect();
            self.transfer(&cash, &to, "agora bench: paid out")?;
            moved += chunk.iter().map(|(_, c)| c).sum::<i64>();
        }
        Ok(moved)
    }
}

/// A synthetic SPEED customer: keys in memory, a certificate of the SPEED
/// CA, an account at the broker.
pub(crate) struct SpeedCustomer {
    pub(crate) id: Identity,
    pub(crate) account: AccountNumber,
    pub(crate) deposit_cents: i64,
}

/// A customer's SPEED transport over HTTP whose every message is timed
/// into her tally, under its step's name ([`speed_step`]): agora-client's
/// `SpeedClient` runs over it unchanged. A delivery is timed to its
/// response's head (the 16-byte product comes in the same packets).
struct TimedSpeed {
    inner: HttpSpeed,
    tally: Arc<Mutex<Tally>>,
}

/// The report's name of the step a SPEED message starts.
fn speed_step(body: &[u8]) -> &'static str {
    match message_tag(body, |_| None) {
        Ok(t) if t == tags::SPEED_NEGOTIATION_REQUEST => "negotiate",
        Ok(t) if t == tags::SPEED_HANDSHAKE => "handshake+delivery",
        Ok(t) if t == tags::SPEED_PRODUCT_REQUEST => "request+delivery",
        Ok(t) if t == tags::SPEED_PAYMENT_ORDER => "pay",
        _ => "other",
    }
}

impl TimedSpeed {
    fn took<T>(&self, body: &[u8], t: Instant, r: &Result<T, ClientError>) {
        let d = t.elapsed();
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .took(speed_step(body), d, r);
    }
}

impl SpeedTransport for TimedSpeed {
    fn catalogue(&self) -> Result<serde_json::Value, ClientError> {
        self.inner.catalogue()
    }

    fn vendor(&self, body: &[u8], step: Option<StepId>) -> Result<VendorReply, ClientError> {
        let t = Instant::now();
        let r = self.inner.vendor(body, step);
        self.took(body, t, &r);
        r
    }

    fn broker(&self, body: &[u8], order: Option<&PaymentOrderId>) -> Result<Vec<u8>, ClientError> {
        let t = Instant::now();
        let r = self.inner.broker(body, order);
        self.took(body, t, &r);
        r
    }

    fn complaint(&self, upload: Upload<'_>) -> Result<Vec<u8>, ClientError> {
        self.inner.complaint(upload)
    }
}

/// The encrypted product, kept in memory up to [`MAX_SPEED_PRODUCT_LEN`]
/// (a longer delivery is refused as it comes).
struct Bounded(Vec<u8>);

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let max = agora_core::crypto::stream::ciphertext_len(MAX_SPEED_PRODUCT_LEN);
        if (self.0.len() + data.len()) as u64 > max {
            return Err(std::io::Error::other(
                "the delivery is longer than the product the bench buys",
            ));
        }
        self.0.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl From<SpeedClientError> for OpError {
    fn from(e: SpeedClientError) -> OpError {
        match e {
            SpeedClientError::Node(e) => OpError::Node(e),
            SpeedClientError::Protocol(e) => OpError::Client(e),
            SpeedClientError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                OpError::Check {
                    kind: "delivery",
                    what: "the delivery was cut",
                }
            }
            SpeedClientError::Io(_) => OpError::Check {
                kind: "delivery",
                what: "the delivery breaks its framing (a length over its bound, or bytes \
                       after the head)",
            },
        }
    }
}

/// One SPEED purchase over the node through agora-client's `SpeedClient`
/// (as `agora speed buy` makes one), the product kept in memory and
/// decrypted with the receipt's K. `paying` is set to the order just
/// before its PaymentOrder is sent (a purchase that fails after may still
/// be paid).
fn speed_purchase(
    env: &SpeedEnv,
    mode: SpeedMode,
    speed: &SpeedClient,
    me: &SpeedCustomer,
    rng: &mut impl Rng,
    paying: &mut Option<PaymentOrderId>,
) -> Result<(), OpError> {
    let open = || Ok(Bounded(Vec::with_capacity(64)));
    let (ready, Bounded(ct)) = match mode {
        SpeedMode::Normal => {
            match speed.negotiate_into(
                rng,
                &me.id,
                &env.vendor,
                SPEED_PRODUCT,
                &AcceptFirst,
                open,
            )? {
                (Negotiated::Ready(ready), Some(ct)) => (ready, ct),
                _ => {
                    return Err(OpError::Check {
                        kind: "no-deal",
                        what: "the customer did not take the vendor's first offer",
                    })
                }
            }
        }
        SpeedMode::Aggressive => {
            speed.request_into(rng, &me.id, &env.vendor, SPEED_PRODUCT, env.price, open)?
        }
    };
    if ready.price() != env.price {
        return Err(OpError::Check {
            kind: "wrong-price",
            what: "the bill is not at the catalogue's price",
        });
    }
    // Every purchase has a fresh NID: the bench pays no bill twice.
    *paying = Some(ready.order());
    let purchase = speed.pay_from_account(
        rng,
        &me.id,
        &env.broker,
        &env.vendor,
        ready,
        me.account.clone(),
        &|_| false,
        |_, _| Ok(()),
    )?;
    let mismatch = |what| OpError::Check {
        kind: "product-mismatch",
        what,
    };
    let mut plain = Vec::with_capacity(env.product.len());
    agora_speed::product::decrypt(&purchase.key, &ct[..], &mut plain)
        .map_err(|_| mismatch("the receipt's K does not decrypt the product"))?;
    if plain != env.product {
        return Err(mismatch("the product is not the vendor's file"));
    }
    Ok(())
}

/// The money at the end of a SPEED run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MoneyCheck {
    pub(crate) price_cents: i64,
    /// Purchases completed: receipt opened, product decrypted and checked.
    pub(crate) completed: u64,
    /// Purchases the broker recorded as paid that did not complete (the
    /// receipt was lost or refused, or the product did not check).
    pub(crate) paid_not_completed: u64,
    pub(crate) vendor_before: i64,
    pub(crate) vendor_after: i64,
    /// Deposits less what is left on the customers' accounts.
    pub(crate) customers_spent: i64,
    /// `Ledger::total` in euros before the setup and after the pay-out.
    pub(crate) total_before: i128,
    pub(crate) total_after: i128,
    /// Moved back from the customers to the cash account after the check.
    pub(crate) paid_out: i64,
}

impl MoneyCheck {
    pub(crate) fn vendor_gain(&self) -> i64 {
        self.vendor_after - self.vendor_before
    }

    /// What the vendor must have gained: the price times the purchases
    /// paid.
    pub(crate) fn expected_gain(&self) -> i128 {
        i128::from(self.price_cents)
            * i128::from(self.completed.saturating_add(self.paid_not_completed))
    }

    pub(crate) fn ok(&self) -> bool {
        self.total_before == 0
            && self.total_after == 0
            && i128::from(self.vendor_gain()) == self.expected_gain()
            && self.customers_spent == self.vendor_gain()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "rule": "the ledger sums to zero; the vendor gained price x purchases paid, \
                     which is what the customers spent",
            "price_cents": self.price_cents,
            "purchases_completed": self.completed,
            "paid_not_completed": self.paid_not_completed,
            "vendor_before_cents": self.vendor_before,
            "vendor_after_cents": self.vendor_after,
            "vendor_gain_cents": self.vendor_gain(),
            "expected_gain_cents": self.expected_gain().to_string(),
            "customers_spent_cents": self.customers_spent,
            "ledger_total_before_cents": self.total_before.to_string(),
            "ledger_total_after_cents": self.total_after.to_string(),
            "paid_out_cents": self.paid_out,
        })
    }
}

/// What a SPEED run reports besides the common figures.
#[derive(Debug)]
pub(crate) struct SpeedOutcome {
    pub(crate) mode: SpeedMode,
    pub(crate) price: Money,
    pub(crate) product_bytes: usize,
    pub(crate) deposit_cents: i64,
    pub(crate) money: MoneyCheck,
}

/// A SPEED run: setup (customers), the measured phase, the money check.
pub(crate) fn run_speed(
    env: &SpeedEnv,
    mode: SpeedMode,
    scenario: Scenario,
    n: usize,
    limits: &Limits,
    window: &Window,
) -> anyhow::Result<(Setup, Outcome)> {
    let t0 = Instant::now();
    let eur = euro()?;
    let total_before = env.ledger.total(eur)?;
    let per_op = scenario.requests_per_op();
    // Enough for the most purchases one customer could make in the limits.
    let most = (limits.budget / per_op)
        .min(
            limits
                .duration
                .as_secs()
                .max(1)
                .saturating_mul(MAX_PURCHASES_PER_SEC_PER_CUSTOMER),
        )
        .saturating_add(1);
    let deposit = env
        .price_cents()?
        .checked_mul(i64::try_from(most)?)
        .context("deposit too large")?;
    let (customers, reg_time) = env.register_many(n, deposit)?;
    let clients = warm_clients_at(&env.client, &env.url, n)?;
    let vendor_before = env.ledger.balance(&env.vendor_account)?.cents;
    let setup = Setup {
        secs: t0.elapsed().as_secs_f64(),
        customers: Some((customers.len(), reg_time.as_secs_f64())),
        ..Setup::default()
    };
    env.say(&format!(
        "measuring: {n} customers buying {:?} in {} mode...",
        SPEED_PRODUCT,
        mode.name()
    ));
    let workers: Vec<(&SpeedCustomer, NodeClient)> = customers.iter().zip(clients).collect();
    let (results, wall) = race(workers, limits, window, |_, (me, client)| {
        let mut rng = os_rng();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let speed = SpeedClient::new(Box::new(TimedSpeed {
            inner: HttpSpeed::new(client),
            tally: tally.clone(),
        }));
        let sent = || tally.lock().unwrap_or_else(|p| p.into_inner()).requests;
        let mut unsure = Vec::new();
        while limits.reserve(per_op) {
            let before = sent();
            let mut paying = None;
            let start = Instant::now();
            let r = speed_purchase(env, mode, &speed, me, &mut rng, &mut paying);
            let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
            match r {
                Ok(()) => {
                    t.successes += 1;
                    t.record("purchase", start.elapsed());
                }
                Err(e) => {
                    t.error(e.kind());
                    unsure.extend(paying);
                }
            }
            limits.release(per_op - (t.requests - before).min(per_op));
        }
        drop(speed);
        let t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
        (t, unsure)
    });
    let mut unsure = Vec::new();
    let tally = merge_all(results.into_iter().map(|(t, u)| {
        unsure.extend(u);
        t
    }));
    // The money: failed purchases whose payment went through count as
    // paid (their receipt was lost or refused after the broker booked).
    let mut paid_not_completed = 0u64;
    for order in &unsure {
        if env.ledger.payment(order)?.is_some() {
            paid_not_completed += 1;
        }
    }
    let vendor_after = env.ledger.balance(&env.vendor_account)?.cents;
    let mut left = Vec::with_capacity(customers.len());
    let mut customers_spent = 0i64;
    for c in &customers {
        let b = env.ledger.balance(&c.account)?.cents;
        customers_spent += c.deposit_cents - b;
        left.push((c.account.clone(), b));
    }
    let paid_out = env.pay_out(&left)?;
    let money = MoneyCheck {
        price_cents: env.price_cents()?,
        completed: tally.successes,
        paid_not_completed,
        vendor_before,
        vendor_after,
        customers_spent,
        total_before,
        total_after: env.ledger.total(eur)?,
        paid_out,
    };
    Ok((
        setup,
        Outcome {
            speed: Some(SpeedOutcome {
                mode,
                price: env.price,
                product_bytes: env.product.len(),
                deposit_cents: deposit,
                money,
            }),
            ..Outcome::new(tally, wall)
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_money_check_wants_every_cent_accounted_for() {
        let good = MoneyCheck {
            price_cents: 50,
            completed: 10,
            paid_not_completed: 1,
            vendor_before: 1_000,
            vendor_after: 1_550,
            customers_spent: 550,
            total_before: 0,
            total_after: 0,
            paid_out: 12_345,
        };
        assert!(good.ok());
        assert_eq!(good.vendor_gain(), 550);
        assert_eq!(good.json()["ok"], true);
        let broken = [
            MoneyCheck {
                vendor_after: 1_600,
                ..good.clone()
            },
            MoneyCheck {
                customers_spent: 500,
                ..good.clone()
            },
            MoneyCheck {
                total_after: -50,
                ..good.clone()
            },
            MoneyCheck {
                total_before: 1,
                ..good.clone()
            },
            MoneyCheck {
                paid_not_completed: 0,
                ..good.clone()
            },
        ];
        for m in broken {
            assert!(!m.ok(), "{m:?}");
            assert_eq!(m.json()["ok"], false);
        }
    }
}
