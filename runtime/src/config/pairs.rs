//! The user's configuration of a processor: `key=value` pairs handed to the guest's `init`.

/// Parses `key=value` arguments, refusing anything else with the argument named.
pub fn parse_pairs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(args.len());
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!("--config expects key=value, got `{arg}`"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("--config `{arg}` has an empty key"));
        }
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(format!("--config key `{key}` is given twice"));
        }
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod test {
    use super::parse_pairs;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let pairs = parse_pairs(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(pairs, [("a".into(), "1".into()), ("b".into(), "x=y".into())]);
    }

    #[test]
    fn arguments_without_equals_or_repeated_keys_are_refused_by_name() {
        assert!(parse_pairs(&["novalue".into()]).unwrap_err().contains("`novalue`"));
        assert!(parse_pairs(&["a=1".into(), "a=2".into()]).unwrap_err().contains("`a`"));
    }
}
