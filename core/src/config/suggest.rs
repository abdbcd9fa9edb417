//! The valid key nearest to an unknown one, for the errors of unknown keys in the file and in the
//! environment. The valid names come from serde, which lists the fields of a struct when it refuses
//! an unknown one (`deny_unknown_fields`); nothing here lists keys by hand.

use std::collections::VecDeque;

use figment::Figment;
use figment::error::Kind;
use figment::providers::Serialized;

use super::Config;

/// The valid key nearest to `path`, whose part `path[at]` is unknown to the struct at
/// `path[..at]`, which has the fields `expected`; parts after `at` (the rest of an environment
/// variable's name) are matched against the fields below. `None` when nothing nearer is found.
pub(super) fn nearest_key(
    path: &[String],
    at: usize,
    expected: &'static [&'static str],
) -> Option<Vec<String>> {
    let mut key: Vec<String> = path.get(..at)?.to_vec();
    let mut rest: VecDeque<String> = path.get(at..)?.iter().cloned().collect();
    let mut fields = Some(expected);
    while let Some(part) = rest.pop_front() {
        let Some(names) = fields else {
            // Below a map (`auth.tokens`) any name is a key: keep the rest as written.
            key.push(part);
            key.extend(rest);
            break;
        };
        let name = if names.contains(&part.as_str()) {
            part
        } else if let Some((name, tail)) = missing_separator(&key, names, &part) {
            rest.push_front(tail);
            name
        } else {
            names
                .iter()
                .min_by_key(|name| strsim::damerau_levenshtein(&part, name))?
                .to_string()
        };
        key.push(name);
        fields = fields_at(&key);
    }
    (key != path).then_some(key)
}

/// `part` split after the name of a table, when a single `_` was written where levels are
/// separated (`SIDECAST_SERVER_BIND` for `SIDECAST_SERVER__BIND`): `server_bind` is `server` and
/// `bind`. The longest such name wins.
fn missing_separator(key: &[String], names: &[&str], part: &str) -> Option<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            let tail = part.strip_prefix(name)?.strip_prefix('_')?;
            let mut table = key.to_vec();
            table.push((*name).to_owned());
            (!tail.is_empty() && fields_at(&table).is_some())
                .then(|| ((*name).to_owned(), tail.to_owned()))
        })
        .max_by_key(|(name, _)| name.len())
}

/// The fields of the struct at `key` (`[]`: the sections; `["server"]`: the keys of `[server]`),
/// as serde names them when it refuses an unknown one. `None` when `key` is no struct: a map
/// (`auth.tokens`) takes any name, a value none.
pub(super) fn fields_at(key: &[String]) -> Option<&'static [&'static str]> {
    // No field is named `?`: serde refuses it and says which fields there are.
    const PROBE: &str = "?";
    let probe: Vec<&str> = key.iter().map(String::as_str).chain([PROBE]).collect();
    let refusal = Figment::from(Serialized::defaults(Config::default()))
        .merge(Serialized::default(&probe.join("."), 0))
        .extract::<Config>()
        .err()?;
    refusal.into_iter().find_map(|e| match e.kind {
        Kind::UnknownField(field, expected) if field == PROBE && e.path.len() == probe.len() => {
            Some(expected)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    fn nearest(parts: &[&str], at: usize) -> Option<String> {
        let path = key(parts);
        let expected = fields_at(&path[..at]).expect("a struct");
        nearest_key(&path, at, expected).map(|k| k.join("."))
    }

    #[test]
    fn fields_come_from_the_structs() {
        let sections = fields_at(&[]).expect("the sections");
        assert!(sections.contains(&"server") && sections.contains(&"recovery"));
        let server = fields_at(&key(&["server"])).expect("the keys of [server]");
        assert!(server.contains(&"bind"));
        let jwt = fields_at(&key(&["auth", "jwt"])).expect("the keys of [auth.jwt]");
        assert!(jwt.contains(&"issuer"));
        assert_eq!(fields_at(&key(&["auth", "tokens"])), None, "a map");
        assert_eq!(fields_at(&key(&["server", "bind"])), None, "a value");
    }

    #[test]
    fn nearest_keys() {
        assert_eq!(
            nearest(&["servr", "bind"], 0).as_deref(),
            Some("server.bind")
        );
        assert_eq!(
            nearest(&["servr", "bindd"], 0).as_deref(),
            Some("server.bind")
        );
        assert_eq!(
            nearest(&["session", "secrt"], 1).as_deref(),
            Some("session.secret")
        );
        assert_eq!(nearest(&["server_bind"], 0).as_deref(), Some("server.bind"));
        assert_eq!(
            nearest(&["auth", "jwt_issuer"], 1).as_deref(),
            Some("auth.jwt.issuer")
        );
        // `ingress` is a list, not a table: a typo, not a missing separator.
        assert_eq!(
            nearest(&["broker", "ingress_unsigned_okk"], 1).as_deref(),
            Some("broker.ingress_unsigned_ok")
        );
        assert_eq!(
            nearest(&["auth", "tokns", "alice"], 1).as_deref(),
            Some("auth.tokens.alice")
        );
    }
}
