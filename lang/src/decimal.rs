//! Exact decimals with six fractional digits, for money and quantities (`98.70`).
//!
//! Stored as a count of millionths in an `i64`, so comparisons are exact integer comparisons in
//! the evaluator and the solver alike.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Number of millionths in one unit.
const SCALE: i64 = 1_000_000;
pub const MAX_FRACTION_DIGITS: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal(i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecimalError {
    TooManyFractionDigits,
    OutOfRange,
    Malformed,
}

impl Decimal {
    pub fn from_millionths(millionths: i64) -> Decimal {
        Decimal(millionths)
    }

    pub fn millionths(self) -> i64 {
        self.0
    }

    pub fn from_int(value: i64) -> Option<Decimal> {
        value.checked_mul(SCALE).map(Decimal)
    }

    /// Parses `-12`, `98.70` or `0.000001`; more than six fractional digits is an error rather
    /// than a silent rounding.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecimalError::Malformed);
        }
        if !fraction.bytes().all(|b| b.is_ascii_digit())
            || (digits.contains('.') && fraction.is_empty())
        {
            return Err(DecimalError::Malformed);
        }
        if fraction.len() > MAX_FRACTION_DIGITS {
            return Err(DecimalError::TooManyFractionDigits);
        }
        let whole: i64 = whole.parse().map_err(|_| DecimalError::OutOfRange)?;
        let mut fraction_value: i64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| DecimalError::Malformed)?
        };
        for _ in fraction.len()..MAX_FRACTION_DIGITS {
            fraction_value *= 10;
        }
        let magnitude = whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(fraction_value))
            .ok_or(DecimalError::OutOfRange)?;
        Ok(Decimal(if negative { -magnitude } else { magnitude }))
    }
}

impl fmt::Display for Decimal {
    /// Prints the shortest exact form with at least two fractional digits: `98.70`, `0.000001`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let whole = magnitude / SCALE as u64;
        let fraction = format!("{:06}", magnitude % SCALE as u64);
        let trimmed = fraction.trim_end_matches('0');
        let fraction = if trimmed.len() < 2 {
            &fraction[..2]
        } else {
            trimmed
        };
        write!(f, "{sign}{whole}.{fraction}")
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let text = String::deserialize(deserializer)?;
        Decimal::parse(&text).map_err(|e| serde::de::Error::custom(format!("{e:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!(Decimal::parse("98.70").unwrap().to_string(), "98.70");
        assert_eq!(Decimal::parse("0.000001").unwrap().millionths(), 1);
        assert_eq!(Decimal::parse("-12").unwrap().to_string(), "-12.00");
        assert_eq!(
            Decimal::parse("50000.5").unwrap().millionths(),
            50_000_500_000
        );
    }

    #[test]
    fn rejects_what_it_cannot_represent() {
        assert_eq!(
            Decimal::parse("0.1234567"),
            Err(DecimalError::TooManyFractionDigits)
        );
        assert_eq!(
            Decimal::parse("99999999999999999"),
            Err(DecimalError::OutOfRange)
        );
        assert_eq!(Decimal::parse("1."), Err(DecimalError::Malformed));
    }
}
