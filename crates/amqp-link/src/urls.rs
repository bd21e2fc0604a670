//! Several brokers: the nodes of a cluster (or independent brokers) a client may connect
//! to, as one non-empty list of [`AmqpUrl`]s.
//!
//! Written as a comma-separated list — `amqp://u:p@a:5672/%2f,amqp://u:p@b:5672/%2f` —
//! in a flag (which may also be repeated: the lists concatenate, [`AmqpUrls::concat`]) or
//! in an environment variable, which can only hold one string. Each element is an
//! [`AmqpUrl`] and is checked as one; around the commas whitespace is trimmed.
//!
//! Why the checks are in this order (all before any element is parsed):
//!
//! * **Empty elements** (`a,,b`, a trailing comma) are refused, not skipped: a list that
//!   lost a URL on its way through a script is a mistake worth one line, not a node that
//!   silently goes missing.
//! * **An element without `://`** is refused next, with the hint that a comma in a
//!   password must be written `%2C`. A raw comma splits a password in two, and the first
//!   half alone (`amqp://user:pa`) would parse as a host and a port — its error would then
//!   quote half a password. Refusing the second half (`ss@host`) first keeps every
//!   message free of it, and the whole list is shown through [`redact_list`], which hides
//!   a password even across such a comma.
//! * Then each element is parsed; a one-element list fails exactly as a single URL does.

use std::fmt;
use std::str::FromStr;

use crate::url::{AmqpUrl, UrlError, redact};

/// Why a list of broker URLs was refused; every message shows the URLs with their
/// passwords hidden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlsError {
    #[error("no broker URL given: write one amqp:// URL, or several separated by commas")]
    Empty,

    #[error(
        "the list of broker URLs {list:?} has an empty element ({position} of {count}): \
         separate the URLs by single commas, with nothing after the last one"
    )]
    EmptyElement {
        list: String,
        position: usize,
        count: usize,
    },

    #[error(
        "element {position} of {count} in the list of broker URLs {list:?} is not a URL (no \
         scheme): each element must start with amqp://, and a comma in a password must be \
         written %2C"
    )]
    NotAUrl {
        list: String,
        position: usize,
        count: usize,
    },

    /// A one-element list: the URL's own error, as if it had been given alone.
    #[error(transparent)]
    Url(UrlError),

    #[error("broker URL {position} of {count}: {source}")]
    InList {
        position: usize,
        count: usize,
        #[source]
        source: UrlError,
    },
}

/// One or more broker URLs, in the order a client tries them. Never empty.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrls(Vec<AmqpUrl>);

impl AmqpUrls {
    /// Parses a comma-separated list (see the module doc), e.g.
    /// `amqp://guest:guest@127.0.0.1:5672/%2f, amqp://guest:guest@127.0.0.1:5673/%2f`.
    pub fn parse(input: &str) -> Result<Self, UrlsError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlsError::Empty);
        }
        let elements: Vec<&str> = input.split(',').map(str::trim).collect();
        let count = elements.len();
        let at = |check: fn(&str) -> bool| elements.iter().position(|e| check(e)).map(|i| i + 1);
        if let Some(position) = at(str::is_empty) {
            let list = redact_list(input);
            return Err(UrlsError::EmptyElement {
                list,
                position,
                count,
            });
        }
        if count > 1
            && let Some(position) = at(|e| !e.contains("://"))
        {
            let list = redact_list(input);
            return Err(UrlsError::NotAUrl {
                list,
                position,
                count,
            });
        }
        let mut urls = Vec::with_capacity(count);
        for (index, element) in elements.into_iter().enumerate() {
            urls.push(AmqpUrl::parse(element).map_err(|source| match count {
                1 => UrlsError::Url(source),
                _ => UrlsError::InList {
                    position: index + 1,
                    count,
                    source,
                },
            })?);
        }
        Ok(AmqpUrls(urls))
    }

    /// The list of `urls`, in order; `None` when there are none.
    pub fn new(urls: Vec<AmqpUrl>) -> Option<Self> {
        (!urls.is_empty()).then_some(AmqpUrls(urls))
    }

    /// One list from several, in order: what a repeated `--amqp-url` amounts to. `None`
    /// when there are none.
    pub fn concat<'a>(lists: impl IntoIterator<Item = &'a AmqpUrls>) -> Option<Self> {
        Self::new(
            lists
                .into_iter()
                .flat_map(|l| l.0.iter().cloned())
                .collect(),
        )
    }

    /// The clap value parser for a flag taking a list (`value_parser =
    /// AmqpUrls::value_parser()`); like [`AmqpUrl::value_parser`], it words its own
    /// errors so that clap never echoes a password.
    pub fn value_parser() -> AmqpUrlsParser {
        AmqpUrlsParser
    }

    /// The first URL: where a client starts.
    pub fn first(&self) -> &AmqpUrl {
        &self.0[0]
    }

    /// The URL at `index`, counted modulo the list's length: a client that walks the list
    /// round and round just counts up.
    pub fn cycle(&self, index: usize) -> &AmqpUrl {
        &self.0[index % self.0.len()]
    }

    /// How many URLs (at least 1).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: the list is never empty (here for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn iter(&self) -> std::slice::Iter<'_, AmqpUrl> {
        self.0.iter()
    }

    /// The list as given, passwords and all, comma-separated: for the command line of a
    /// process this one starts (`--amqp-url` of the spawned worker). Never for a message.
    pub fn secret(&self) -> String {
        self.0
            .iter()
            .map(AmqpUrl::secret)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl From<AmqpUrl> for AmqpUrls {
    fn from(url: AmqpUrl) -> Self {
        AmqpUrls(vec![url])
    }
}

impl<'a> IntoIterator for &'a AmqpUrls {
    type Item = &'a AmqpUrl;
    type IntoIter = std::slice::Iter<'a, AmqpUrl>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromStr for AmqpUrls {
    type Err = UrlsError;

    fn from_str(s: &str) -> Result<Self, UrlsError> {
        Self::parse(s)
    }
}

/// The URLs comma-separated, each with its password hidden.
impl fmt::Display for AmqpUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, url) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(url, f)?;
        }
        Ok(())
    }
}

/// Like [`fmt::Display`]: no password in a debug print either.
impl fmt::Debug for AmqpUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AmqpUrls").field(&self.0).finish()
    }
}

/// [`redact`] for a list that may not parse: each URL from one `scheme://` to the next
/// is redacted as a whole, so a password with a raw comma in it is hidden entirely (the
/// user information ends at the last `@` before the next URL).
pub fn redact_list(text: &str) -> String {
    let starts = url_starts(text);
    let mut shown = text[..starts.first().copied().unwrap_or(text.len())].to_owned();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        shown.push_str(&redact(&text[start..end]));
    }
    shown
}

/// Where each `scheme://` in `text` begins (the scheme's first letter).
fn url_starts(text: &str) -> Vec<usize> {
    let scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    text.match_indices("://")
        .map(|(at, _)| {
            text[..at]
                .char_indices()
                .rev()
                .take_while(|&(_, c)| scheme_char(c))
                .last()
                .map_or(at, |(i, _)| i)
        })
        .collect()
}

/// See [`AmqpUrls::value_parser`].
#[derive(Debug, Clone, Copy)]
pub struct AmqpUrlsParser;

impl clap::builder::TypedValueParser for AmqpUrlsParser {
    type Value = AmqpUrls;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<AmqpUrls, clap::Error> {
        crate::url::parse_flag(arg, value, "the broker URLs", AmqpUrls::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "amqp://guest:s3cret@127.0.0.1:5672/%2f";
    const B: &str = "amqp://guest:s3cret@127.0.0.1:5673/%2f";

    /// The flag as a real command line hands it over, repeated as often as `values`.
    fn through_clap(values: &[&str]) -> Result<AmqpUrls, clap::Error> {
        let command = clap::Command::new("t").arg(
            clap::Arg::new("amqp_url")
                .long("amqp-url")
                .action(clap::ArgAction::Append)
                .value_parser(AmqpUrls::value_parser()),
        );
        let mut argv = vec!["t"];
        for value in values {
            argv.extend(["--amqp-url", value]);
        }
        let mut matches = command.try_get_matches_from(argv)?;
        let lists: Vec<AmqpUrls> = matches.remove_many("amqp_url").unwrap().collect();
        Ok(AmqpUrls::concat(&lists).unwrap())
    }

    fn error(input: &str) -> String {
        AmqpUrls::parse(input).unwrap_err().to_string()
    }

    fn ports(urls: &AmqpUrls) -> Vec<u16> {
        urls.iter().map(AmqpUrl::port).collect()
    }

    #[test]
    fn a_comma_list_keeps_its_order_and_trims_around_the_commas() {
        let urls = AmqpUrls::parse(&format!("  {A} ,\t{B}  ")).unwrap();
        assert_eq!(ports(&urls), [5672, 5673]);
        assert_eq!((urls.len(), urls.first().port()), (2, 5672));
        assert_eq!(urls.cycle(3).port(), 5673);
        assert_eq!(urls.secret(), format!("{A},{B}"));
        assert_eq!(AmqpUrls::parse(&urls.secret()).unwrap(), urls);
    }

    #[test]
    fn one_url_is_a_list_of_one_and_fails_as_a_single_url_does() {
        let urls = AmqpUrls::parse(A).unwrap();
        assert_eq!(urls, AmqpUrls::from(AmqpUrl::parse(A).unwrap()));
        assert_eq!(
            error("http://broker"),
            AmqpUrl::parse("http://broker").unwrap_err().to_string()
        );
        assert!(error("broker:5672").contains("no scheme"));
    }

    #[test]
    fn a_repeated_flag_concatenates_its_lists() {
        let c = "amqp://guest:s3cret@127.0.0.1:5674/%2f";
        let urls = through_clap(&[&format!("{A},{B}"), c]).unwrap();
        assert_eq!(ports(&urls), [5672, 5673, 5674]);
        assert_eq!(ports(&through_clap(&[A]).unwrap()), [5672]);
    }

    #[test]
    fn empty_lists_and_empty_elements_are_refused_naming_the_place() {
        assert_eq!(AmqpUrls::parse(" "), Err(UrlsError::Empty));
        for (input, position, count) in [
            (format!("{A},,{B}"), 2, 3),
            (format!("{A},"), 2, 2),
            (format!(", {A}"), 1, 2),
        ] {
            let said = error(&input);
            assert!(
                said.contains(&format!("empty element ({position} of {count})")),
                "{input}: {said}"
            );
            assert!(!said.contains("s3cret") && !said.contains('\n'), "{said}");
        }
        assert_eq!(AmqpUrls::new(Vec::new()), None);
        assert_eq!(AmqpUrls::concat(&[]), None);
    }

    #[test]
    fn ipv6_hosts_are_kept_in_a_list() {
        let urls = AmqpUrls::parse(&format!("amqp://u:p@[fd00::7]:5999/%2f,{A}")).unwrap();
        assert_eq!(
            (urls.first().host(), urls.first().port()),
            ("fd00::7", 5999)
        );
        assert_eq!(
            urls.to_string(),
            "amqp://u:***@[fd00::7]:5999/%2f,amqp://guest:***@127.0.0.1:5672/%2f"
        );
    }

    #[test]
    fn no_password_reaches_display_debug_or_any_refusal() {
        let urls = AmqpUrls::parse(&format!("{A},{B}")).unwrap();
        assert!(!urls.to_string().contains("s3cret"), "{urls}");
        assert!(!format!("{urls:?}").contains("s3cret"), "{urls:?}");
        for input in [
            format!("{A},amqp://guest:s3cret@h:99999/%2f"),
            format!("{A},,amqp://guest:s3cret@h/%2f"),
            format!("{A},amqps://guest:s3cret@h/%2f"),
            // A raw comma in a password splits it: neither half may show.
            "amqp://guest:s3,cret@h/%2f,amqp://guest:s3cret@h2/%2f".to_owned(),
            "amqp://guest:s3c,ret@h/%2f".to_owned(),
        ] {
            let said = error(&input);
            for secret in ["s3cret", "s3", "cret", "ret@"] {
                assert!(!said.contains(secret), "{input}: {said}");
            }
            let clap = through_clap(&[&input]).unwrap_err().to_string();
            assert!(
                !clap.contains("s3cret") && clap.contains("--amqp-url"),
                "{clap}"
            );
        }
    }

    #[test]
    fn an_element_that_fails_is_named_by_its_place() {
        let said = error(&format!("{A},amqp://guest:s3cret@h:99999/%2f"));
        assert!(
            said.starts_with("broker URL 2 of 2: invalid broker URL"),
            "{said}"
        );
        let said = error(&format!("{A},broker-b:5672"));
        assert!(
            said.contains("element 2 of 2") && said.contains("%2C"),
            "{said}"
        );
    }

    #[test]
    fn a_list_is_redacted_even_where_it_does_not_parse() {
        assert_eq!(
            redact_list("amqp://u:p@a,amqp://v:q@b"),
            "amqp://u:***@a,amqp://v:***@b"
        );
        assert_eq!(redact_list("amqp://u:p,w@a,x"), "amqp://u:***@a,x");
        assert_eq!(redact_list("amqp://a, amqp://b"), "amqp://a, amqp://b");
        assert_eq!(redact_list("nonsense"), "nonsense");
    }
}
