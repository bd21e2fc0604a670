//! Where the broker lives: the URL type is [`amqp_link::AmqpUrl`], the one definition the
//! worker and the lab use too (its host kept as written, its password never shown); this
//! module names the environment variable the `inventory` command reads it from.

pub use amqp_link::AmqpUrl;

/// Name of the environment variable the CLI reads `--amqp-url` from (beside
/// `PURCHASING_API_URL` for HTTP); the worker reads the same one.
pub const PURCHASING_AMQP_URL: &str = "PURCHASING_AMQP_URL";
