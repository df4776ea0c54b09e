//! Exact prices: a whole number of cents, greater than 0 and at most 1,000,000.00.
//!
//! On the wire a price is a JSON number (`20`, `10.5`), as the course sent it. It is never
//! held as a float: decoding checks the number has at most two decimals and converts it to
//! cents once; encoding writes whole prices as integers and the rest with exactly the digits
//! the cents give (`1050` cents is `10.5`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A price in cents. Construct one with [`Price::from_cents`] or by decoding JSON, both of
/// which enforce the bounds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(u64);

/// Why a number is not a valid price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// Zero, negative, or not a number at all.
    #[error("Price must be greater than 0")]
    NotPositive,
    /// More than [`Price::MAX`].
    #[error("Price must be at most 1000000")]
    TooLarge,
    /// A fraction of a cent.
    #[error("Price must have at most two decimals")]
    TooManyDecimals,
}

impl Price {
    /// The largest price accepted: 1,000,000.00.
    pub const MAX: Price = Price(100_000_000);

    /// The price of `cents` cents, if it is within bounds.
    pub const fn from_cents(cents: u64) -> Result<Self, PriceError> {
        if cents == 0 {
            Err(PriceError::NotPositive)
        } else if cents > Self::MAX.0 {
            Err(PriceError::TooLarge)
        } else {
            Ok(Self(cents))
        }
    }

    /// The price in cents.
    pub const fn cents(self) -> u64 {
        self.0
    }

    /// The price a JSON number denotes. Integers are exact; a number with a fractional part
    /// must be within a millionth of a cent of a whole number of cents, which accepts every
    /// two-decimal literal (whatever float it parsed to) and rejects every three-decimal one.
    pub fn from_json_number(number: &serde_json::Number) -> Result<Self, PriceError> {
        if let Some(whole) = number.as_u64() {
            let cents = whole.checked_mul(100).ok_or(PriceError::TooLarge)?;
            return Self::from_cents(cents);
        }
        if number.as_i64().is_some() {
            return Err(PriceError::NotPositive);
        }
        match number.as_f64() {
            Some(value) => Self::from_f64(value),
            None => Err(PriceError::NotPositive),
        }
    }

    fn from_f64(value: f64) -> Result<Self, PriceError> {
        if !value.is_finite() || value <= 0.0 {
            return Err(PriceError::NotPositive);
        }
        if value > Self::MAX.0 as f64 / 100.0 {
            return Err(PriceError::TooLarge);
        }
        let scaled = value * 100.0;
        let cents = scaled.round();
        if (scaled - cents).abs() > 1e-6 {
            return Err(PriceError::TooManyDecimals);
        }
        // In range by the checks above: 0 < cents <= 100_000_000.
        Self::from_cents(cents as u64)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, cents) = (self.0 / 100, self.0 % 100);
        match cents {
            0 => write!(f, "{whole}"),
            c if c % 10 == 0 => write!(f, "{whole}.{}", c / 10),
            c => write!(f, "{whole}.{c:02}"),
        }
    }
}

impl fmt::Debug for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Price({self})")
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(100) {
            serializer.serialize_u64(self.0 / 100)
        } else {
            // The nearest double to a two-decimal number prints back as that number (shortest
            // round-trip formatting), so the wire shows exactly the cents.
            serializer.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PriceVisitor;
        impl serde::de::Visitor<'_> for PriceVisitor {
            type Value = Price;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a price: a number greater than 0 with at most two decimals")
            }
            fn visit_u64<E: serde::de::Error>(self, whole: u64) -> Result<Price, E> {
                Price::from_json_number(&whole.into()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, whole: i64) -> Result<Price, E> {
                Price::from_json_number(&whole.into()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Price, E> {
                Price::from_f64(value).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PriceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Price, PriceError> {
        let number: serde_json::Number = serde_json::from_str(json).unwrap();
        Price::from_json_number(&number)
    }

    #[test]
    fn accepts_whole_and_two_decimal_prices_exactly() {
        assert_eq!(parse("20").unwrap().cents(), 2000);
        assert_eq!(parse("10.5").unwrap().cents(), 1050);
        assert_eq!(parse("10.50").unwrap().cents(), 1050);
        assert_eq!(parse("0.01").unwrap().cents(), 1);
        assert_eq!(parse("19.99").unwrap().cents(), 1999);
        assert_eq!(parse("1000000").unwrap(), Price::MAX);
        assert_eq!(parse("1e2").unwrap().cents(), 10_000);
    }

    #[test]
    fn every_two_decimal_literal_up_to_a_thousand_is_exact() {
        for cents in 1..=100_000u64 {
            let literal = format!("{}.{:02}", cents / 100, cents % 100);
            assert_eq!(parse(&literal).unwrap().cents(), cents, "{literal}");
        }
    }

    #[test]
    fn rejects_out_of_range_and_fractions_of_cents() {
        assert_eq!(parse("0"), Err(PriceError::NotPositive));
        assert_eq!(parse("-10"), Err(PriceError::NotPositive));
        assert_eq!(parse("-0.5"), Err(PriceError::NotPositive));
        assert_eq!(parse("0.0"), Err(PriceError::NotPositive));
        assert_eq!(parse("1000000.01"), Err(PriceError::TooLarge));
        assert_eq!(parse("1e300"), Err(PriceError::TooLarge));
        assert_eq!(parse("18446744073709551615"), Err(PriceError::TooLarge));
        assert_eq!(parse("10.005"), Err(PriceError::TooManyDecimals));
        assert_eq!(parse("0.001"), Err(PriceError::TooManyDecimals));
    }

    #[test]
    fn encodes_whole_prices_as_integers_and_the_rest_exactly() {
        let json = |cents| serde_json::to_string(&Price::from_cents(cents).unwrap()).unwrap();
        assert_eq!(json(2000), "20");
        assert_eq!(json(1050), "10.5");
        assert_eq!(json(1999), "19.99");
        assert_eq!(json(1), "0.01");
        for cents in (1..=100_000_000u64).step_by(9_973) {
            let price = Price::from_cents(cents).unwrap();
            let back: Price =
                serde_json::from_str(&serde_json::to_string(&price).unwrap()).unwrap();
            assert_eq!(back, price);
            assert_eq!(serde_json::to_string(&price).unwrap(), price.to_string());
        }
    }

    #[test]
    fn decoding_rejects_non_numbers() {
        assert!(serde_json::from_str::<Price>("\"10\"").is_err());
        assert!(serde_json::from_str::<Price>("null").is_err());
        assert!(serde_json::from_str::<Price>("-3").is_err());
    }
}
