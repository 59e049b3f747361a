//! Negotiation strategies (paper section 4.2, "each party makes a bid that
//! could change in following messages (it depends on the negotiation
//! strategy)"): the vendor's price rules and the customer's strategies, as
//! traits so that either side can plug in its own.
//!
//! A strategy sees the other side's offers and answers with a [`Move`]; the
//! roles ([`crate::customer`], [`crate::vendor`]) turn moves into messages
//! and enforce the protocol (sequence numbers, last offers), so a strategy
//! cannot break it.

use agora_core::Money;

/// A party's answer to the other side's offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// Agree to the other side's price. For the customer this is the
    /// Handshake; for the vendor, a NegotiationStep offering exactly the
    /// customer's price.
    Accept,
    /// Offer `price`; `last` if the sender will not move further.
    Offer {
        /// The price offered.
        price: Money,
        /// Whether it is the last offer.
        last: bool,
    },
    /// Break the negotiation off.
    WalkAway,
}

/// How a vendor answers offers for one product.
pub trait VendorStrategy: std::fmt::Debug + Send + Sync {
    /// The answer in round `round` (0 for the answer to the
    /// NegotiationRequest) to the customer's `offer` (`None`: she asked for
    /// a price), `last` if it was her last offer.
    fn answer(&self, round: u32, offer: Option<Money>, last: bool) -> Move;
}

/// How a customer answers the vendor's offers.
pub trait CustomerStrategy: std::fmt::Debug + Send + Sync {
    /// Her opening: the price she proposes in the NegotiationRequest (if
    /// any) and whether it is her last.
    fn opening(&self) -> (Option<Money>, bool);
    /// Her answer in round `round` (0 for the first vendor offer) to the
    /// vendor's `offer`, `last` if it was his last.
    fn answer(&self, round: u32, offer: Money, last: bool) -> Move;
}

/// The vendor's price rule: ask the list price, come down by `step` each
/// round to `floor`, and agree to any offer at or above the current ask.
/// At the floor the offer is the last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceRule {
    /// The list price.
    pub list: Money,
    /// The lowest price the vendor accepts.
    pub floor: Money,
    /// How much the ask drops per round (0: fixed price).
    pub step: u64,
}

impl PriceRule {
    /// A fixed price: list = floor, no step.
    pub fn fixed(price: Money) -> PriceRule {
        PriceRule {
            list: price,
            floor: price,
            step: 0,
        }
    }

    /// The ask in `round`.
    pub fn ask(&self, round: u32) -> Money {
        let drop = self.step.saturating_mul(u64::from(round));
        let cents = self.list.cents.saturating_sub(drop).max(self.floor.cents);
        Money::new(cents, self.list.currency)
    }
}

impl VendorStrategy for PriceRule {
    fn answer(&self, round: u32, offer: Option<Money>, last: bool) -> Move {
        let ask = self.ask(round);
        match offer {
            Some(o) if o.currency != ask.currency => Move::WalkAway,
            Some(o) if o.cents >= ask.cents => Move::Accept,
            // Her last offer is below the floor: nothing more to say.
            Some(o) if last && o.cents < self.floor.cents => Move::WalkAway,
            // Her last offer is between floor and ask: take it.
            Some(_) if last => Move::Accept,
            _ => Move::Offer {
                price: ask,
                last: ask.cents <= self.floor.cents,
            },
        }
    }
}

/// Accept the vendor's first offer (the paper's pilot: "they accept the
/// first price proposed by the vendor").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptFirst;

impl CustomerStrategy for AcceptFirst {
    fn opening(&self) -> (Option<Money>, bool) {
        (None, false)
    }

    fn answer(&self, _round: u32, _offer: Money, _last: bool) -> Move {
        Move::Accept
    }
}

/// Open at `target`, raise by `step` each round up to `limit`, accept any
/// vendor offer at or below the current bid, and walk away from a last
/// offer above `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The opening offer.
    pub target: Money,
    /// How much the offer rises per round.
    pub step: u64,
    /// The walk-away limit: never pay more.
    pub limit: Money,
}

impl Target {
    /// The bid in `round` (round 0 is the opening).
    pub fn bid(&self, round: u32) -> Money {
        let rise = self.step.saturating_mul(u64::from(round));
        let cents = self.target.cents.saturating_add(rise).min(self.limit.cents);
        Money::new(cents, self.target.currency)
    }
}

impl CustomerStrategy for Target {
    fn opening(&self) -> (Option<Money>, bool) {
        let bid = self.bid(0);
        (Some(bid), bid.cents >= self.limit.cents)
    }

    fn answer(&self, round: u32, offer: Money, last: bool) -> Move {
        if offer.currency != self.target.currency {
            return Move::WalkAway;
        }
        let bid = self.bid(round);
        if offer.cents <= bid.cents {
            return Move::Accept;
        }
        if last {
            return if offer.cents <= self.limit.cents {
                Move::Accept
            } else {
                Move::WalkAway
            };
        }
        let next = self.bid(round + 1);
        Move::Offer {
            price: next,
            last: next.cents >= self.limit.cents,
        }
    }
}

/// Accept any offer up to `limit`; walk away from anything above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkAwayAbove {
    /// The most she pays.
    pub limit: Money,
}

impl CustomerStrategy for WalkAwayAbove {
    fn opening(&self) -> (Option<Money>, bool) {
        (None, false)
    }

    fn answer(&self, _round: u32, offer: Money, _last: bool) -> Move {
        if offer.currency == self.limit.currency && offer.cents <= self.limit.cents {
            Move::Accept
        } else {
            Move::WalkAway
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Currency;

    fn eur(c: u64) -> Money {
        Money::new(c, Currency::new("EUR").unwrap())
    }

    #[test]
    fn price_rule_comes_down_to_the_floor_and_says_last() {
        let r = PriceRule {
            list: eur(1000),
            floor: eur(800),
            step: 150,
        };
        assert_eq!(
            r.answer(0, None, false),
            Move::Offer {
                price: eur(1000),
                last: false
            }
        );
        assert_eq!(
            r.answer(1, Some(eur(500)), false),
            Move::Offer {
                price: eur(850),
                last: false
            }
        );
        assert_eq!(
            r.answer(2, Some(eur(500)), false),
            Move::Offer {
                price: eur(800),
                last: true
            }
        );
        assert_eq!(r.answer(2, Some(eur(810)), false), Move::Accept);
        assert_eq!(r.answer(3, Some(eur(700)), true), Move::WalkAway);
        assert_eq!(r.answer(1, Some(eur(820)), true), Move::Accept);
    }

    #[test]
    fn target_meets_a_rule_in_the_middle() {
        let t = Target {
            target: eur(600),
            step: 100,
            limit: eur(900),
        };
        assert_eq!(t.opening(), (Some(eur(600)), false));
        assert_eq!(
            t.answer(0, eur(1000), false),
            Move::Offer {
                price: eur(700),
                last: false
            }
        );
        assert_eq!(t.answer(1, eur(700), false), Move::Accept);
        assert_eq!(t.answer(3, eur(950), true), Move::WalkAway);
        assert_eq!(t.answer(3, eur(880), true), Move::Accept);
    }
}
