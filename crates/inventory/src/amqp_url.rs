//! Where the broker lives: a validated `amqp://` URL, and the way it is shown to people
//! (password hidden).
//!
//! Parsed once (at the CLI's argument parsing, or before a `StockManager` is
//! built), so the publisher holds a URL it can actually connect to. Two things are checked
//! here because the AMQP client gets them wrong silently:
//!
//! * `amqps://` is refused up front: the client is built without TLS (see the workspace's
//!   `lapin` entry), and would fail only at the first connect.
//! * The host is taken from the URL as written. lapin's own parser (`amq-protocol-uri`
//!   10.6) keeps names and IPv4 addresses but replaces an IPv6 literal by `localhost`, so
//!   `amqp://[fe80::1]:5672` would quietly connect to this machine; we put the host back
//!   (without the brackets, which the socket address lookup does not take).

use std::fmt;
use std::str::FromStr;

use lapin::uri::{AMQPScheme, AMQPUri};
use reqwest::Url;

use crate::error::ConfigError;

/// Name of the environment variable the CLI reads `--amqp-url` from (beside
/// `PURCHASING_API_URL` for HTTP).
pub const PURCHASING_AMQP_URL: &str = "PURCHASING_AMQP_URL";

/// An `amqp://` URL with a host: `amqp://USER:PASSWORD@HOST:PORT/VHOST`. The port defaults
/// to 5672 and the virtual host to `/` (written `%2f`, as `loadtest broker` prints it).
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    /// What the client connects to.
    uri: AMQPUri,
    /// The URL as shown in messages: as given, with the password replaced by `***`.
    shown: String,
}

impl AmqpUrl {
    /// Parses and checks `input`, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub fn parse(input: &str) -> Result<Self, ConfigError> {
        let shown = redact(input.trim());
        let invalid = |reason: &str| ConfigError::InvalidAmqpUrl {
            url: shown.clone(),
            reason: reason.to_owned(),
        };
        if !input.contains("://") {
            return Err(invalid(
                "no scheme; write it as amqp://USER:PASSWORD@HOST:PORT/%2f",
            ));
        }
        let url = Url::parse(input.trim()).map_err(|e| invalid(&e.to_string()))?;
        match url.scheme() {
            "amqp" => {}
            "amqps" => return Err(ConfigError::AmqpsNotSupported { url: shown }),
            scheme => {
                return Err(ConfigError::UnsupportedAmqpScheme {
                    url: shown,
                    scheme: scheme.to_owned(),
                });
            }
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => return Err(invalid("no host")),
        };
        if url.fragment().is_some() {
            return Err(invalid("an AMQP URL cannot have a fragment (#…)"));
        }
        let mut uri = AMQPUri::from_str(input.trim()).map_err(|e| invalid(&e))?;
        if uri.scheme != AMQPScheme::AMQP {
            return Err(ConfigError::AmqpsNotSupported { url: shown });
        }
        // IPv6 literals come back in brackets, which the TCP connector does not expect.
        uri.authority.host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(AmqpUrl { uri, shown })
    }

    /// What lapin connects to.
    pub(crate) fn uri(&self) -> &AMQPUri {
        &self.uri
    }

    /// The host the client connects to (an IP address or a name).
    pub fn host(&self) -> &str {
        &self.uri.authority.host
    }

    pub fn port(&self) -> u16 {
        self.uri.authority.port
    }

    /// The virtual host (`/` by default).
    pub fn vhost(&self) -> &str {
        &self.uri.vhost
    }
}

impl FromStr for AmqpUrl {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::parse(s)
    }
}

/// Shows the URL with its password hidden, so it can go into logs and error messages.
impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Like [`fmt::Display`]: the password never reaches a debug print either.
impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AmqpUrl").field(&self.shown).finish()
    }
}

/// `scheme://user:***@host…` for `scheme://user:password@host…`; anything else unchanged.
/// Textual, so that even a URL that does not parse is shown without its password.
pub(crate) fn redact(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &text[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}***{}",
        &text[..authority_start],
        &authority[..=colon],
        &text[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(input: &str) -> String {
        AmqpUrl::parse(input).unwrap_err().to_string()
    }

    #[test]
    fn the_brokers_printed_url_parses_with_its_ip_host_and_vhost() {
        let url = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5673/%2f").unwrap();
        assert_eq!(url.host(), "127.0.0.1");
        assert_eq!(url.port(), 5673);
        assert_eq!(url.vhost(), "/");
        assert_eq!(url.to_string(), "amqp://guest:***@127.0.0.1:5673/%2f");
        assert!(!format!("{url:?}").contains(":guest@"));
    }

    #[test]
    fn an_ip_address_is_not_turned_into_localhost() {
        let lan = AmqpUrl::parse("amqp://u:p@192.168.0.10/%2f").unwrap();
        assert_eq!(lan.host(), "192.168.0.10");
        assert_eq!(lan.port(), 5672);
        // lapin's parser alone would connect to localhost here.
        assert_eq!(
            AmqpUrl::parse("amqp://[fe80::1]:5672").unwrap().host(),
            "fe80::1"
        );
        assert_eq!(
            AmqpUrl::parse("amqp://rabbit.lan").unwrap().host(),
            "rabbit.lan"
        );
    }

    #[test]
    fn defaults_are_the_protocols() {
        let url = AmqpUrl::parse("amqp://broker").unwrap();
        assert_eq!((url.port(), url.vhost()), (5672, "/"));
        assert_eq!(url.to_string(), "amqp://broker");
    }

    #[test]
    fn amqps_and_other_schemes_are_refused_with_the_reason() {
        let tls = error("amqps://u:secret@broker:5671");
        assert!(
            tls.contains("without TLS") && tls.contains("amqp://"),
            "{tls}"
        );
        assert!(!tls.contains("secret"), "{tls}");
        assert_eq!(
            error("http://broker"),
            r#"the broker URL "http://broker" has scheme "http"; it must start with amqp://"#
        );
        assert!(error("broker:5672").contains("no scheme"));
        assert!(error("amqp://").contains("invalid broker URL"));
        assert!(error("amqp://u:secret@broker:99999").contains("invalid port"));
        assert!(!error("amqp://u:secret@broker:99999").contains("secret"));
    }

    #[test]
    fn passwords_are_hidden_even_in_urls_that_do_not_parse() {
        assert_eq!(redact("amqp://u:pw@h:1/%2f"), "amqp://u:***@h:1/%2f");
        assert_eq!(redact("amqp://u@h"), "amqp://u@h");
        assert_eq!(redact("amqp://h/a@b"), "amqp://h/a@b");
        assert_eq!(redact("nonsense"), "nonsense");
        assert_eq!(redact("amqp://u:p@w@h"), "amqp://u:***@h");
    }
}
