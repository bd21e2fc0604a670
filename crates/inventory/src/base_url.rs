//! Where the purchasing API lives: a validated `http://` base URL.
//!
//! Parsed once (at the CLI's argument parsing, or when a `StockManager` is built),
//! so everything downstream holds a URL the client can actually use.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::error::ConfigError;
use crate::wire::REPLENISHMENT_PATH;

/// An `http://` URL with a host, and optionally a path prefix (an API hosted under a
/// virtual directory), without query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// The URL as written back to people: normalized, without a trailing `/`.
    text: String,
}

impl BaseUrl {
    /// Parses and checks `input`, e.g. `http://127.0.0.1:8080`.
    pub fn parse(input: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidUrl {
            url: input.to_owned(),
            reason: reason.to_owned(),
        };
        // "127.0.0.1:8080" or "localhost:8080" would otherwise fail obscurely (the latter
        // even parses, as scheme "localhost"): say what is missing.
        if !input.contains("://") {
            return Err(invalid("no scheme; write it as http://HOST:PORT"));
        }
        let url = Url::parse(input).map_err(|e| invalid(&e.to_string()))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(ConfigError::HttpsNotSupported {
                    url: input.to_owned(),
                });
            }
            scheme => {
                return Err(ConfigError::UnsupportedScheme {
                    url: input.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "a base URL cannot have a query (?…) or fragment (#…)",
            ));
        }
        let text = url.as_str().trim_end_matches('/').to_owned();
        // Checked here so that building the endpoint later cannot fail.
        Url::parse(&format!("{text}{REPLENISHMENT_PATH}"))
            .map_err(|e| invalid(&format!("cannot append {REPLENISHMENT_PATH}: {e}")))?;
        Ok(BaseUrl { text })
    }

    /// The base URL without a trailing `/`, e.g. `http://127.0.0.1:8080`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The replenishment endpoint under this base.
    pub fn replenishment_url(&self) -> Url {
        Url::parse(&format!("{}{REPLENISHMENT_PATH}", self.text))
            .expect("checked by BaseUrl::parse")
    }
}

impl FromStr for BaseUrl {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(input: &str) -> String {
        BaseUrl::parse(input).unwrap_err().to_string()
    }

    #[test]
    fn accepts_http_urls_and_drops_the_trailing_slash() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:8080/").unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            BaseUrl::parse("HTTP://LocalHost").unwrap().as_str(),
            "http://localhost"
        );
    }

    #[test]
    fn builds_the_endpoint_under_the_base_path() {
        let root = BaseUrl::parse("http://vm:8080").unwrap();
        assert_eq!(
            root.replenishment_url().as_str(),
            format!("http://vm:8080{REPLENISHMENT_PATH}")
        );
        let prefixed = BaseUrl::parse("http://vm/purchasing/").unwrap();
        assert_eq!(
            prefixed.replenishment_url().as_str(),
            format!("http://vm/purchasing{REPLENISHMENT_PATH}")
        );
    }

    #[test]
    fn https_is_refused_with_the_reason() {
        let message = error("https://vm:8443");
        assert!(message.contains("https"), "{message}");
        assert!(message.contains("without TLS"), "{message}");
        assert!(message.contains("http://"), "{message}");
        assert!(matches!(
            BaseUrl::parse("https://vm"),
            Err(ConfigError::HttpsNotSupported { .. })
        ));
    }

    #[test]
    fn other_schemes_and_missing_schemes_are_explained() {
        assert_eq!(
            error("ftp://vm"),
            r#"the purchasing API URL "ftp://vm" has scheme "ftp"; it must start with http://"#
        );
        assert_eq!(
            error("127.0.0.1:8080"),
            r#"invalid purchasing API URL "127.0.0.1:8080": no scheme; write it as http://HOST:PORT"#
        );
        assert!(error("localhost:8080").contains("no scheme"));
    }

    #[test]
    fn malformed_urls_are_refused() {
        assert!(error("http://").contains("invalid purchasing API URL"));
        assert!(error("http://vm:99999").contains("invalid port"));
        assert!(error("http://vm/?x=1").contains("query"));
        assert!(error("http://vm/#top").contains("fragment"));
        assert!(error("").contains("no scheme"));
    }
}
