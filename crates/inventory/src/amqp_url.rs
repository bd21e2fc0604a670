//! Where the brokers live: the URL types are [`amqp_link::AmqpUrl`] and, for several nodes,
//! [`amqp_link::AmqpUrls`] — the one definition the worker and the lab use too (hosts kept
//! as written, passwords never shown); this module names the environment variable the
//! `inventory` command reads them from.

pub use amqp_link::{AmqpUrl, AmqpUrls};

/// Name of the environment variable the CLI reads `--amqp-url` from (beside
/// `PURCHASING_API_URL` for HTTP): one URL or several, comma-separated. The worker reads
/// the same one.
pub const PURCHASING_AMQP_URL: &str = "PURCHASING_AMQP_URL";
