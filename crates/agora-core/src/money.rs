//! Money: an amount in cents (u64) and an ISO 4217 currency code. All
//! arithmetic is checked; amounts of different currencies never mix.

use crate::{DecodeError, Error};
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 alphabetic currency code: three ASCII capital letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parse a three-letter code such as `EUR`.
    pub fn new(code: &str) -> Result<Currency, DecodeError> {
        let b = code.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(DecodeError::Invalid(
                "currency must be three capital letters (ISO 4217)",
            ));
        }
        Ok(Currency([b[0], b[1], b[2]]))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Invariant: the constructor admits only ASCII capitals.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl FromStr for Currency {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::new(s)
    }
}

/// An amount of money: `cents` hundredths of one unit of `currency`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Money {
    /// The amount in cents (hundredths of the currency's unit).
    pub cents: u64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// `cents` of `currency`.
    pub fn new(cents: u64, currency: Currency) -> Money {
        Money { cents, currency }
    }

    /// Zero of `currency`.
    pub fn zero(currency: Currency) -> Money {
        Money { cents: 0, currency }
    }

    fn same_currency(&self, other: &Money) -> Result<(), Error> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "currency mismatch: {} against {}",
                self.currency, other.currency
            )))
        }
    }

    /// `self + other`; refuses mixed currencies and overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, Error> {
        self.same_currency(&other)?;
        let cents = self
            .cents
            .checked_add(other.cents)
            .ok_or_else(|| Error::Refused("amount overflows".into()))?;
        Ok(Money { cents, ..self })
    }

    /// `self - other`; refuses mixed currencies and results below zero.
    pub fn checked_sub(self, other: Money) -> Result<Money, Error> {
        self.same_currency(&other)?;
        let cents = self
            .cents
            .checked_sub(other.cents)
            .ok_or_else(|| Error::Refused("amount would go below zero".into()))?;
        Ok(Money { cents, ..self })
    }

    /// Whether `self` covers `price`: same currency and at least as much.
    pub fn covers(&self, price: &Money) -> bool {
        self.currency == price.currency && self.cents >= price.cents
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:02} {}",
            self.cents / 100,
            self.cents % 100,
            self.currency
        )
    }
}

impl FromStr for Money {
    type Err = DecodeError;

    /// Parses `"12.34 EUR"`, `"12 EUR"` or `"12.3 EUR"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const BAD: DecodeError = DecodeError::Invalid("amount must look like \"12.34 EUR\"");
        let (amount, code) = s.trim().split_once(' ').ok_or(BAD)?;
        if amount.starts_with('-') {
            return Err(DecodeError::Invalid("an amount cannot be negative"));
        }
        let currency = Currency::new(code.trim())?;
        let (units, frac) = match amount.split_once('.') {
            Some((u, f)) => (u, f),
            None => (amount, ""),
        };
        if units.is_empty()
            || !units.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 2
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(BAD);
        }
        let units: u64 = units.parse().map_err(|_| BAD)?;
        let frac_cents: u64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<u64>().map_err(|_| BAD)? * 10,
            _ => frac.parse().map_err(|_| BAD)?,
        };
        let cents = units
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac_cents))
            .ok_or(DecodeError::Invalid("amount overflows"))?;
        Ok(Money { cents, currency })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(c: u64) -> Money {
        Money::new(c, Currency::new("EUR").unwrap())
    }

    #[test]
    fn parse_and_display_round_trip() {
        let m: Money = "12.34 EUR".parse().unwrap();
        assert_eq!(m, eur(1234));
        assert_eq!(m.to_string(), "12.34 EUR");
        assert_eq!("7 EUR".parse::<Money>().unwrap(), eur(700));
        assert_eq!("7.5 EUR".parse::<Money>().unwrap(), eur(750));
        for bad in [
            "",
            "12.345 EUR",
            "-1 EUR",
            "1 eur",
            "1.2.3 EUR",
            "x EUR",
            "1 EURO",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad}");
        }
        assert!("184467440737095517 EUR".parse::<Money>().is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(eur(5).checked_add(eur(7)).unwrap(), eur(12));
        assert!(eur(5).checked_sub(eur(7)).is_err());
        assert!(eur(u64::MAX).checked_add(eur(1)).is_err());
        let usd = Money::new(5, Currency::new("USD").unwrap());
        assert!(eur(5).checked_add(usd).is_err());
        assert!(eur(10).covers(&eur(10)));
        assert!(!eur(9).covers(&eur(10)));
        assert!(!eur(10).covers(&usd));
    }
}
