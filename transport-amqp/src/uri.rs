//! The AMQP URL of [`AmqpOptions::url`], parsed for lapin and completed with what the options
//! say.

use lapin::uri::{AMQPScheme, AMQPUri};
use sidecast_core::BrokerError;

use crate::error;
use crate::options::AmqpOptions;

/// One node's address: the parsed URI and its redacted form, the only one logged.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) uri: AMQPUri,
    pub(crate) shown: String,
}

/// Parses every URL of [`AmqpOptions::url`] (one, or several separated by commas: the nodes of
/// a cluster), completed as [`parse_uri`] does. An error names the entry at fault.
pub(crate) fn parse_uris(options: &AmqpOptions) -> Result<Vec<Endpoint>, BrokerError> {
    let urls = sidecast_core::broker::url_list(options.url.as_str());
    let several = urls.len() > 1;
    urls.iter()
        .enumerate()
        .map(|(index, url)| {
            let shown = sidecast_core::broker::redact_url(url);
            let described = if several {
                format!("{shown:?} (entry {} of {})", index + 1, urls.len())
            } else {
                format!("{shown:?}")
            };
            let uri = parse_one(options, url, &described)?;
            Ok(Endpoint { uri, shown })
        })
        .collect()
}

/// Parses the URL and fills in what the options say: the heartbeat (unless the URL has one) and
/// lapin's TCP connect time-out.
#[cfg(test)]
pub(crate) fn parse_uri(options: &AmqpOptions, redacted: &str) -> Result<AMQPUri, BrokerError> {
    parse_one(options, options.url.as_str(), &format!("{redacted:?}"))
}

/// Parses `url`, shown in errors as `shown`, and completes it from `options`.
fn parse_one(options: &AmqpOptions, url: &str, shown: &str) -> Result<AMQPUri, BrokerError> {
    let bad = |why: &str| {
        error::config(format!(
            "the URL {shown} is not a valid AMQP URL ({why}); it must look like \
             amqp://user:password@host:port/vhost (the default vhost `/` is written %2f), or \
             amqps://... for TLS"
        ))
    };
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("amqp" | "amqps")) {
        return Err(bad("the scheme must be amqp or amqps"));
    }
    let mut uri: AMQPUri = url.parse().map_err(|e: String| bad(&e))?;
    debug_assert!(matches!(uri.scheme, AMQPScheme::AMQP | AMQPScheme::AMQPS));
    if uri.query.heartbeat.is_none() {
        // Whole seconds, rounded up so that a sub-second heartbeat is not turned off.
        let seconds = options.heartbeat.as_secs()
            + u64::from(options.heartbeat.subsec_nanos() > 0 && options.heartbeat.as_secs() == 0);
        uri.query.heartbeat = Some(u16::try_from(seconds).unwrap_or(u16::MAX));
    }
    if uri.query.connection_timeout.is_none() {
        uri.query.connection_timeout =
            Some(u64::try_from(options.connect_timeout.as_millis()).unwrap_or(u64::MAX));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_url_is_parsed_and_completed() {
        let options = AmqpOptions::new("amqp://u:p@h:1234/v%2fx");
        let uri = parse_uri(&options, "").expect("valid");
        assert_eq!(uri.authority.port, 1234);
        assert_eq!(uri.vhost, "v/x");
        assert_eq!(uri.query.heartbeat, Some(10));
        assert_eq!(uri.query.connection_timeout, Some(3_000));

        let uri = parse_uri(&AmqpOptions::new("amqps://h/%2f?heartbeat=3"), "").expect("valid");
        assert!(matches!(uri.scheme, AMQPScheme::AMQPS));
        assert_eq!(uri.query.heartbeat, Some(3), "the URL's heartbeat wins");

        let sub_second = AmqpOptions {
            heartbeat: Duration::from_millis(300),
            ..AmqpOptions::new("amqp://h")
        };
        assert_eq!(
            parse_uri(&sub_second, "").expect("valid").query.heartbeat,
            Some(1)
        );
    }

    #[test]
    fn several_urls_are_parsed_each_and_an_error_names_the_entry() {
        let options = AmqpOptions::new("amqp://u:hunter2@a:5672/%2f, amqps://u:hunter2@b/v");
        let endpoints = parse_uris(&options).expect("valid");
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].uri.authority.host, "a");
        assert_eq!(endpoints[1].uri.authority.port, 5671);
        assert_eq!(endpoints[1].uri.vhost, "v");
        assert_eq!(
            endpoints[1].uri.query.heartbeat,
            Some(10),
            "each is completed"
        );
        assert_eq!(endpoints[0].shown, "amqp://u:***@a:5672/%2f");

        let error = parse_uris(&AmqpOptions::new("amqp://u:hunter2@a,amqp://u:hunter2@b:x"))
            .expect_err("a bad port");
        let shown = error.to_string();
        assert!(shown.contains("(entry 2 of 2)"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");

        let one = parse_uris(&AmqpOptions::new("amqp://h")).expect("valid");
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn bad_urls_and_options_are_config_errors() {
        for url in ["redis://h:1", "amqp://h:notaport", "h:1"] {
            let error = parse_uri(&AmqpOptions::new(url), "shown").expect_err(url);
            assert!(
                matches!(error, BrokerError::Config { .. }),
                "{url}: {error}"
            );
            assert!(
                error.to_string().contains("is not a valid AMQP URL"),
                "{error}"
            );
        }
        let zero = AmqpOptions {
            publish_timeout: Duration::ZERO,
            ..AmqpOptions::default()
        };
        assert!(matches!(zero.validate(), Err(BrokerError::Config { .. })));
        let long_heartbeat = AmqpOptions {
            heartbeat: Duration::from_secs(100_000),
            ..AmqpOptions::default()
        };
        assert!(long_heartbeat.validate().is_err());
    }
}
