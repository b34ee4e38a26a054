//! Validation of names that have to be written into SQL as identifiers.

use crate::WarehouseError;

/// Longest accepted identifier: database names become directory names, and
/// a scratch name derived from one (`<db>__check_<hex>`) must still fit.
pub const MAX_IDENTIFIER_LEN: usize = 200;

/// Whether `s` matches `^[A-Za-z_][A-Za-z0-9_]*$` and is not too long.
pub fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    s.len() <= MAX_IDENTIFIER_LEN
        && (first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks `value` with [`is_identifier`]; `what` names it in the error
/// (e.g. `"database name"`).
pub fn validate_identifier(what: &'static str, value: &str) -> Result<(), WarehouseError> {
    if is_identifier(value) {
        Ok(())
    } else {
        Err(WarehouseError::InvalidIdentifier {
            what,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in [
            "hourglass",
            "_x",
            "a1",
            "Hourglass_test_01",
            "hourglass__check_00ff",
        ] {
            assert!(is_identifier(ok), "{ok}");
        }
    }

    #[test]
    fn rejects_anything_else() {
        let long = "a".repeat(MAX_IDENTIFIER_LEN + 1);
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a.b",
            "a`b",
            "a;DROP",
            "ü",
            "a\n",
            "`x`",
            long.as_str(),
        ] {
            assert!(!is_identifier(bad), "{bad:?}");
            assert!(validate_identifier("database name", bad).is_err());
        }
    }
}
