//! Where the broker lives: a validated `amqp://` URL, and the way it is shown to people
//! (password hidden).
//!
//! Parsed once, where the URL enters (a command-line flag, an environment variable, a
//! library caller), so every side holds a URL it can actually connect to. Checked here
//! because the AMQP client gets these wrong silently:
//!
//! * `amqps://` is refused up front: the client is built without TLS (see the workspace's
//!   `lapin` entry), and would fail only at the first connect.
//! * The host is taken from the URL as written. lapin's own parser (`amq-protocol-uri`
//!   10.6) keeps names and IPv4 addresses but replaces an IPv6 literal by `localhost`, so
//!   `amqp://[fe80::1]:5672` would quietly connect to this machine; we put the host back
//!   (without the brackets, which the socket address lookup does not take).
//! * The password never reaches a message: not through `Display` or `Debug`, not through
//!   a parser's error (lapin's repeats the whole input), not through clap, which echoes the
//!   raw value of a flag it refuses — [`AmqpUrl::value_parser`] words its own error.

use std::fmt;
use std::str::FromStr;

use lapin::uri::{AMQPScheme, AMQPUri};

/// Why a broker URL was refused; every message shows the URL with its password hidden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("invalid broker URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },

    #[error(
        "the broker URL {url:?} uses amqps, which this client does not support \
         (it is built without TLS); use an amqp:// URL"
    )]
    AmqpsNotSupported { url: String },

    #[error("the broker URL {url:?} has scheme {scheme:?}; it must start with amqp://")]
    UnsupportedScheme { url: String, scheme: String },
}

/// An `amqp://` URL with a host: `amqp://USER:PASSWORD@HOST:PORT/VHOST`. The port defaults
/// to 5672 and the virtual host to `/` (written `%2f`, as `loadtest broker` prints it).
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    /// What the client connects to.
    uri: AMQPUri,
    /// The URL as shown in messages: as given, with the password replaced by `***`.
    shown: String,
    /// The URL as given, password included: only for handing on to a child process.
    given: String,
}

impl AmqpUrl {
    /// Parses and checks `input`, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let input = input.trim();
        let shown = redact(input);
        // A parser's reason may quote the input; show it redacted there too.
        let invalid = |reason: &str| UrlError::Invalid {
            url: shown.clone(),
            reason: reason.replace(input, &shown),
        };
        if !input.contains("://") {
            return Err(invalid(
                "no scheme; write it as amqp://USER:PASSWORD@HOST:PORT/%2f",
            ));
        }
        let url = ::url::Url::parse(input).map_err(|e| invalid(&e.to_string()))?;
        match url.scheme() {
            "amqp" => {}
            "amqps" => return Err(UrlError::AmqpsNotSupported { url: shown }),
            scheme => {
                return Err(UrlError::UnsupportedScheme {
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
            return Err(invalid(
                "an AMQP URL cannot have a fragment (#…); a '#', '/' or '?' in a password \
                 must be percent-encoded (%23, %2F, %3F)",
            ));
        }
        let mut uri = AMQPUri::from_str(input).map_err(|e| invalid(&e))?;
        if uri.scheme != AMQPScheme::AMQP {
            return Err(UrlError::AmqpsNotSupported { url: shown });
        }
        // IPv6 literals come back in brackets, which the TCP connector does not expect.
        uri.authority.host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(AmqpUrl {
            uri,
            shown,
            given: input.to_owned(),
        })
    }

    /// The clap value parser for `--amqp-url` (`value_parser = AmqpUrl::value_parser()`).
    /// clap's own error for a value a plain function refuses repeats the raw value —
    /// password and all — so this parser words the whole error itself, URL redacted.
    pub fn value_parser() -> AmqpUrlParser {
        AmqpUrlParser
    }

    /// The URL as given, password and all, for the command line of a process this one
    /// starts (the lab hands its broker to the worker this way). Never for a message.
    pub fn secret(&self) -> &str {
        &self.given
    }

    /// What lapin connects to (`Connection::connect_uri`).
    pub fn uri(&self) -> &AMQPUri {
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

    /// The user name the client logs in with.
    pub fn username(&self) -> &str {
        &self.uri.authority.userinfo.username
    }
}

impl FromStr for AmqpUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
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
/// Textual, so that even a URL that does not parse is shown without its password. The
/// user information ends at the *last* `@`: a password with an unescaped `/`, `?`, `#` or
/// `@` — a URL that does not parse — is hidden whole too.
pub fn redact(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &text[authority_start..];
    let Some(at) = rest.rfind('@') else {
        return text.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}***{}",
        &text[..authority_start],
        &rest[..=colon],
        &rest[at..]
    )
}

/// See [`AmqpUrl::value_parser`].
#[derive(Debug, Clone, Copy)]
pub struct AmqpUrlParser;

impl clap::builder::TypedValueParser for AmqpUrlParser {
    type Value = AmqpUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<AmqpUrl, clap::Error> {
        parse_flag(arg, value, "the broker URL", AmqpUrl::parse)
    }
}

/// A flag's value read by `parse`, or clap's one-line refusal naming the flag (`what`:
/// how the refusal names a value that is not UTF-8). For both URL parsers.
pub(crate) fn parse_flag<T, E: std::fmt::Display>(
    arg: Option<&clap::Arg>,
    value: &std::ffi::OsStr,
    what: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, clap::Error> {
    let flag = arg.and_then(|a| a.get_long()).unwrap_or("amqp-url");
    let refused = |why: String| {
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("invalid value for --{flag}: {why}\n"),
        )
    };
    let text = value
        .to_str()
        .ok_or_else(|| refused(format!("{what} is not valid UTF-8")))?;
    parse(text).map_err(|error| refused(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value as a real command line hands it over, flag and all.
    fn through_clap(input: &str) -> Result<AmqpUrl, clap::Error> {
        let command = clap::Command::new("t").arg(
            clap::Arg::new("amqp_url")
                .long("amqp-url")
                .value_parser(AmqpUrl::value_parser()),
        );
        let mut matches = command.try_get_matches_from(["t", "--amqp-url", input])?;
        Ok(matches.remove_one::<AmqpUrl>("amqp_url").unwrap())
    }

    fn error(input: &str) -> String {
        AmqpUrl::parse(input).unwrap_err().to_string()
    }

    #[test]
    fn the_brokers_printed_url_parses_with_its_ip_host_and_vhost() {
        let url = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5673/%2f").unwrap();
        assert_eq!(url.host(), "127.0.0.1");
        assert_eq!(url.port(), 5673);
        assert_eq!(url.vhost(), "/");
        assert_eq!(url.username(), "guest");
        assert_eq!(url.to_string(), "amqp://guest:***@127.0.0.1:5673/%2f");
        assert!(!format!("{url:?}").contains(":guest@"));
    }

    #[test]
    fn an_ip_address_is_not_turned_into_localhost() {
        let lan = AmqpUrl::parse("amqp://u:p@192.168.0.10/%2f").unwrap();
        assert_eq!(lan.host(), "192.168.0.10");
        assert_eq!(lan.port(), 5672);
        // lapin's parser alone would connect to localhost here.
        let v6 = AmqpUrl::parse("amqp://guest:guest@[fd00::7]:5999/%2f").unwrap();
        assert_eq!((v6.host(), v6.port()), ("fd00::7", 5999));
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
    }

    #[test]
    fn no_refusal_shows_the_password() {
        for input in [
            "amqp://u:s3cret@broker:99999/%2f",
            "amqp://u:s3cret@broker:5672/%2f?heartbeat=often",
            "amqp://u:s3cret@broker:5672/%2f?frame_max=x",
            "amqp://u:pa/s3cret@broker:5672/%2f",
            "amqp://u:pa#s3cret@broker:5672/%2f",
            "amqp://u:pa?s3cret@broker:5672/%2f",
            "amqps://u:s3cret@broker/%2f",
            "amqp://u:s3cret@",
        ] {
            let said = error(input);
            assert!(!said.contains("s3cret"), "{input}: {said}");
            let clap = through_clap(input).unwrap_err().to_string();
            assert!(!clap.contains("s3cret"), "{input}: {clap}");
            assert!(clap.contains("--amqp-url"), "{clap}");
        }
    }

    #[test]
    fn passwords_are_hidden_even_in_urls_that_do_not_parse() {
        assert_eq!(redact("amqp://u:pw@h:1/%2f"), "amqp://u:***@h:1/%2f");
        assert_eq!(redact("amqp://u@h"), "amqp://u@h");
        assert_eq!(redact("amqp://h/a@b"), "amqp://h/a@b");
        assert_eq!(redact("nonsense"), "nonsense");
        assert_eq!(redact("amqp://u:p@w@h"), "amqp://u:***@h");
        assert_eq!(redact("amqp://u:p/w@h/%2f"), "amqp://u:***@h/%2f");
    }
}
