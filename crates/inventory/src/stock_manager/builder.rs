//! The manager's settings: where it sends (HTTP or AMQP), its timeout, its connections
//! and its retry policy, checked when it is built.

use std::time::Duration;

use super::http::http_transport;
use super::manager::{DEFAULT_TIMEOUT, Retry, StockManager};
use super::transport::Transport;
use crate::amqp::{DeliveryMode, Publisher};
use crate::amqp_url::AmqpUrls;
use crate::base_url::BaseUrl;
use crate::error::ConfigError;
use crate::retry::{RetryBudget, RetryPolicy};

/// Settings for a [`StockManager`]; see [`StockManager::builder`] and
/// [`StockManager::amqp_builder`].
#[derive(Debug, Clone)]
pub struct StockManagerBuilder {
    target: Target,
    timeout: Duration,
    new_connection_per_request: bool,
    retry_policy: Option<RetryPolicy>,
    retry_budget: Option<RetryBudget>,
}

/// Where a manager being built sends its orders.
#[derive(Debug, Clone)]
enum Target {
    Http(BaseUrl),
    Amqp(AmqpUrls, DeliveryMode),
}

impl StockManager {
    /// A manager with the original's behaviour: a 30 s timeout and a new TCP connection per
    /// call. `base_url` must be an `http://` URL, e.g. [`DEFAULT_URL`].
    ///
    /// [`DEFAULT_URL`]: super::manager::DEFAULT_URL
    pub fn new(base_url: &str) -> Result<Self, ConfigError> {
        Self::builder(BaseUrl::parse(base_url)?).build()
    }

    /// Over HTTP, starting from the original's behaviour; change it with the builder's
    /// methods.
    pub fn builder(base_url: BaseUrl) -> StockManagerBuilder {
        StockManagerBuilder {
            target: Target::Http(base_url),
            timeout: DEFAULT_TIMEOUT,
            new_connection_per_request: true,
            retry_policy: None,
            retry_budget: None,
        }
    }

    /// Over AMQP, publishing to the brokers at `urls` — one [`AmqpUrl`](crate::AmqpUrl)
    /// or several [`AmqpUrls`], the nodes of a cluster, tried in order — with delivery
    /// `mode` (see [`crate::amqp`] for what each mode declares, sends and counts as
    /// success, and how a lost node is left for the next one). Starts with a 30 s timeout,
    /// no retries and — unlike the original, which connected per call — one connection
    /// reused by every call and every clone; ask for the original's with
    /// [`StockManagerBuilder::new_connection_per_request`].
    pub fn amqp_builder(urls: impl Into<AmqpUrls>, mode: DeliveryMode) -> StockManagerBuilder {
        StockManagerBuilder {
            target: Target::Amqp(urls.into(), mode),
            timeout: DEFAULT_TIMEOUT,
            new_connection_per_request: false,
            retry_policy: None,
            retry_budget: None,
        }
    }
}

impl StockManagerBuilder {
    /// The total deadline of one call: connect, send and the complete answer — under a
    /// retry policy, every attempt and every wait between them. Default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Over HTTP `true` (the default, as the original): every call opens a new TCP
    /// connection and closes it afterwards; `false`: idle connections are kept and reused.
    ///
    /// Over AMQP `false` (the default): one connection and channel, opened by the first
    /// call, shared by every call and clone, replaced after it fails; `true`: the
    /// original's connection, channel and queue declaration per call, closed before the
    /// call returns.
    pub fn new_connection_per_request(mut self, yes: bool) -> Self {
        self.new_connection_per_request = yes;
        self
    }

    /// `None` (the default, as the original): one attempt per call, no idempotency or
    /// deadline header. `Some(policy)`: retries as [`StockManager::replenish`] describes;
    /// the policy is checked by [`StockManagerBuilder::build`].
    pub fn retry_policy(mut self, policy: Option<RetryPolicy>) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Draw on `budget` instead of a fresh one, so that several managers (e.g. one per
    /// virtual user, each with its own connection) share one retry budget as clones of one
    /// manager do. Ignored without a retry policy.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = Some(budget);
        self
    }

    /// Checks the settings and builds the manager. Fails on an unusable retry policy, and
    /// on any retry policy with faithful AMQP delivery: a faithful message has no
    /// `message_id`, so a publish repeated after an unclear failure (a lost connection, a
    /// timeout) could place the order twice, and the original never retried.
    pub fn build(self) -> Result<StockManager, ConfigError> {
        if let (Target::Amqp(_, DeliveryMode::Faithful), Some(_)) =
            (&self.target, &self.retry_policy)
        {
            return Err(ConfigError::InvalidRetryPolicy {
                reason: "retries over AMQP need reliable delivery: a faithful message carries \
                         no message id, so a repeated publish could place the order twice"
                    .to_owned(),
            });
        }
        let retry = match self.retry_policy {
            Some(policy) => {
                policy.validate()?;
                Some(Retry {
                    budget: self
                        .retry_budget
                        .unwrap_or_else(|| RetryBudget::new(&policy)),
                    policy,
                })
            }
            None => None,
        };
        let transport = match self.target {
            Target::Http(base_url) => {
                Transport::Http(http_transport(base_url, self.new_connection_per_request)?)
            }
            Target::Amqp(urls, mode) => {
                Transport::Amqp(Publisher::new(urls, mode, self.new_connection_per_request))
            }
        };
        Ok(StockManager {
            transport,
            timeout: self.timeout,
            new_connection_per_request: self.new_connection_per_request,
            retry,
        })
    }
}
