//! How this project talks to RabbitMQ, defined once for every side that does: the
//! `inventory` publisher, the `purchasing-worker`, the lab and the tests.
//!
//! * [`AmqpUrl`] — a broker URL checked up front, its host kept as written (lapin's own
//!   parser turns an IPv6 literal into `localhost`), its password never shown: not in
//!   `Display`, not in `Debug`, not in the command line's errors ([`AmqpUrl::value_parser`]).
//! * [`AmqpUrls`] — one or more of them, in the order a client tries them: the nodes of a
//!   cluster, written as a comma-separated list (a flag, an environment variable) and
//!   shown with every password hidden.
//! * [`declare_queues`] — the queues of a delivery mode exactly as the wire contract
//!   describes them ([`wire_contract::amqp::Delivery::queues`]), and a broker's refusal
//!   turned into a [`DeclareError`] that names the property that differs.
//!
//! The names themselves (queues, arguments, properties) stay in `wire-contract`, std only;
//! this crate is where they meet the AMQP client.

pub mod declare;
pub mod url;
pub mod urls;

pub use declare::{DeclareError, declare_queues, queue_arguments};
pub use url::{AmqpUrl, UrlError, redact};
pub use urls::{AmqpUrls, UrlsError, redact_list};
