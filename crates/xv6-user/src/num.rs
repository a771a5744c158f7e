//! Parsing numbers in arguments.

/// Parses a decimal `i32` with an optional leading `-` or `+`; `None` for anything else
/// (empty, stray characters, overflow).
pub fn parse_i32(s: &[u8]) -> Option<i32> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(d - b'0');
        if v > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i32::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse_i32(b"0"), Some(0));
        assert_eq!(parse_i32(b"42"), Some(42));
        assert_eq!(parse_i32(b"-7"), Some(-7));
        assert_eq!(parse_i32(b"+7"), Some(7));
        assert_eq!(parse_i32(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_i32(b"-2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32(b"2147483648"), None);
        assert_eq!(parse_i32(b"99999999999999999999"), None);
        assert_eq!(parse_i32(b""), None);
        assert_eq!(parse_i32(b"-"), None);
        assert_eq!(parse_i32(b"12a"), None);
        assert_eq!(parse_i32(b" 1"), None);
    }
}
