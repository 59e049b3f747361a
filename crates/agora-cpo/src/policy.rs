//! The arbiter's policy (paper sections 3.6.1 and 4.2): whom and what she
//! refuses to arbitrate, and the "fill-in-the-blank" terms she requires so
//! that no CPO carries hard-to-interpret conditions.

use crate::msg::{ArbiterRequest, Variant};
use agora_core::{Error, KeyId, Money};

/// Longest text one blank of a template may take, in bytes.
pub const MAX_BLANK_LEN: usize = 200;
/// Most blanks in one template.
pub const MAX_BLANKS: usize = 16;

/// A terms template: literal text with blanks written `{}`. Terms match if
/// they are the template with every blank filled by 1 to
/// [`MAX_BLANK_LEN`] bytes of text on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    literals: Vec<String>,
}

impl Template {
    /// Parse `text`, e.g. `"Deliver within {} days to {}."`.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let literals: Vec<String> = text.split("{}").map(str::to_owned).collect();
        if literals.len() - 1 > MAX_BLANKS {
            return Err(Error::Refused(format!(
                "a template has at most {MAX_BLANKS} blanks"
            )));
        }
        if literals.iter().all(String::is_empty) {
            return Err(Error::Refused("a template needs some literal text".into()));
        }
        Ok(Template {
            source: text.to_owned(),
            literals,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `terms` fill this template. Linear in the length of the terms
    /// times [`MAX_BLANK_LEN`]: the set of positions reachable after each
    /// piece is tracked, so no input can make it backtrack.
    pub fn matches(&self, terms: &str) -> bool {
        let bytes = terms.as_bytes();
        let n = bytes.len();
        // reach[p]: the pieces so far can end at byte p.
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        for (i, lit) in self.literals.iter().enumerate() {
            if i > 0 {
                // A blank: 1..=MAX_BLANK_LEN bytes, no newline, whole chars.
                let mut next = vec![false; n + 1];
                for p in (0..=n).filter(|&p| reach[p]) {
                    for q in p + 1..=(p + MAX_BLANK_LEN).min(n) {
                        if bytes[q - 1] == b'\n' {
                            break;
                        }
                        if terms.is_char_boundary(q) {
                            next[q] = true;
                        }
                    }
                }
                reach = next;
            }
            let mut next = vec![false; n + 1];
            for p in (0..=n).filter(|&p| reach[p]) {
                if bytes[p..].starts_with(lit.as_bytes()) {
                    next[p + lit.len()] = true;
                }
            }
            reach = next;
        }
        reach[n]
    }
}

/// What an arbiter refuses. An empty policy accepts any CCPO whose bond is
/// valid.
#[derive(Clone, Debug, Default)]
pub struct ArbiterPolicy {
    /// Bond keys (key ids) of people she will not deal with.
    pub refused_bonds: Vec<KeyId>,
    /// Words that, in the goods, make her refuse (case-insensitive), e.g.
    /// "used car".
    pub refused_words: Vec<String>,
    /// The highest price she arbitrates, per currency; a currency not listed
    /// has no limit.
    pub max_prices: Vec<Money>,
    /// If not empty, the terms must fill one of these templates.
    pub templates: Vec<Template>,
    /// Her fee: the buyer's additional terms must carry a line
    /// `arbiter-fee: <amount>` of at least this much.
    pub fee: Option<Money>,
}

/// The fee line of the additional terms.
pub const FEE_PREFIX: &str = "arbiter-fee:";

impl ArbiterPolicy {
    /// Judges a request; `Err(Error::Refused(why))` if the policy refuses.
    pub fn check<V: Variant>(&self, x0: &ArbiterRequest<V>, buyer: &KeyId) -> Result<(), Error> {
        let c = &x0.ccpo;
        if self.refused_bonds.contains(buyer) {
            return Err(Error::Refused(
                "the arbiter does not deal with this bond holder".into(),
            ));
        }
        let goods = c.goods.to_lowercase();
        if let Some(w) = self
            .refused_words
            .iter()
            .find(|w| goods.contains(&w.to_lowercase()))
        {
            return Err(Error::Refused(format!(
                "the arbiter does not arbitrate {w:?}"
            )));
        }
        if let Some(max) = self
            .max_prices
            .iter()
            .find(|m| m.currency == c.price.currency)
        {
            if c.price.cents > max.cents {
                return Err(Error::Refused(format!(
                    "price over the arbiter's limit of {max}"
                )));
            }
        }
        if !self.templates.is_empty() && !self.templates.iter().any(|t| t.matches(&c.terms)) {
            return Err(Error::Refused(
                "terms do not fill any of the arbiter's templates".into(),
            ));
        }
        if let Some(fee) = &self.fee {
            let offered = x0
                .additional_terms
                .lines()
                .find_map(|l| l.trim().strip_prefix(FEE_PREFIX))
                .and_then(|v| v.trim().parse::<Money>().ok());
            match offered {
                Some(o) if o.covers(fee) => {}
                _ => {
                    return Err(Error::Refused(format!(
                        "the additional terms must agree to the arbiter's fee ({FEE_PREFIX} {fee})"
                    )))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_filled_blanks_only() {
        let t = Template::parse("Deliver within {} days to {}.").unwrap();
        assert!(t.matches("Deliver within 3 days to Paris."));
        assert!(t.matches("Deliver within 10 days to New York, NY."));
        assert!(
            !t.matches("Deliver within  days to Paris."),
            "a blank is never empty"
        );
        assert!(
            !t.matches("Deliver within 3 days to Paris"),
            "literal text must be there"
        );
        // A blank holds any text of one line ("Paris. Or never" is a
        // destination, if an odd one); more lines are not the template.
        assert!(t.matches("Deliver within 3 days to Paris. Or never."));
        assert!(!t.matches("Deliver within 3 days to Paris.\nOr never."));
        assert!(!t.matches("Deliver within 3 days to Paris.\n"));
        assert!(
            !t.matches("Deliver within 3\nmaybe days to Paris."),
            "one line per blank"
        );
        let long = format!(
            "Deliver within {} days to Paris.",
            "9".repeat(MAX_BLANK_LEN + 1)
        );
        assert!(!t.matches(&long));
        // Blanks and multi-byte text.
        let t = Template::parse("{} € by {}").unwrap();
        assert!(t.matches("12 € by Friday"));
        assert!(t.matches("zwölf € by Freitag"));
        assert!(Template::parse("{}{}").is_err());
        assert!(Template::parse(&"{} ".repeat(MAX_BLANKS + 1)).is_err());
    }

    #[test]
    fn adversarial_terms_finish_quickly() {
        let t = Template::parse(&"a{}".repeat(MAX_BLANKS)).unwrap();
        let terms = "a".repeat(crate::ccpo::MAX_TERMS_LEN);
        // No assertion on time (the machine is shared); the DP bounds it.
        let _ = t.matches(&terms);
    }
}
