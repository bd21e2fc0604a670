//! One broker connection's life: connect, declare the queues, consume until a shutdown,
//! a store failure or a lost connection, then leave the broker cleanly. The reconnect
//! loop around it is in [`crate::worker`].
//!
//! # Faithful: the original `QueueHandler`
//!
//! One channel, the queue declared as the original did (`durable: false`, no arguments),
//! `basic.consume` with `no_ack = true` and **no prefetch limit**: the broker pushes
//! every ready message as fast as the network allows and forgets it at once. Messages
//! are handled one at a time, each store call finishing before the next message is
//! taken, and `Handling message: CODE` is logged, as the original printed it. What no
//! prefetch limit means: the whole backlog can sit in this process's memory (a spike of
//! a million messages is a million buffered deliveries here, not in the broker), and a
//! crash loses every message pushed and not yet written — the worker never held them
//! for the broker, it owned them.
//!
//! A message that cannot be written (not UTF-8, an invalid code, a store failure) is
//! logged and counted as lost: it was auto-acknowledged, so there is no dead-letter
//! queue to give it to. (The original had no error handling at all: the exception ended
//! the process, losing everything pushed to it; counting instead of crashing lets the lab
//! see the loss without a supervisor.)
//!
//! # Reliable: at least once, effectively once
//!
//! The quorum queue with its dead-letter queue ([`Delivery::queues`]), `basic.qos` with
//! the prefetch, manual acknowledgements. Every delivery is handed to a task at once, so
//! up to `prefetch` orders run concurrently on the blocking pool; each calls the store
//! with the message id as its idempotency key, and the verdict ([`crate::handling`])
//! decides: ack after the line is written (and synced with `--durable`) or replayed,
//! reject (→ dead-letter queue) for poison, nack with requeue after
//! [`RETRY_PAUSE`] for a failure that may pass, nack with requeue and stop consuming for
//! one that sticks until a restart. A crash at any point loses nothing: an unacknowledged
//! message is redelivered (flagged `redelivered`), and if its line was already written
//! the journal replays it instead of writing it again.
//!
//! A reliable message without a `message_id` is written without deduplication (a
//! warning is logged once, and each is counted): such a message comes from a publisher
//! that does not follow the reliable contract, and its order is still a valid order.
//! Dead-lettering it would refuse real orders for a missing header; writing it keeps
//! at-least-once, only its redelivery could write it twice.
//!
//! # Leaving: shutdown, store failure, lost connection
//!
//! * **Shutdown** (SIGTERM, Ctrl-C): `basic.cancel`, so the broker pushes nothing more;
//!   the orders in hand finish and, in reliable mode, are acknowledged — deliveries that
//!   arrive before the cancel is confirmed are worked on too, at most a prefetch's worth;
//!   then the channel and the connection are closed. Faithful mode finishes the order in
//!   progress, but the messages already pushed behind it were auto-acknowledged: they are
//!   lost, as in the original (counted, and logged with their number). The cancel comes
//!   first so that nothing *more* is pushed to be lost: a message still in the broker
//!   stays there for the next consumer.
//! * **Store failure that sticks**: the same cancel; reliable mode requeues what it holds
//!   without starting it, so another worker can write it.
//! * **Lost connection**: the orders in progress still finish (their memory must be
//!   given back before a new connection brings new messages), their acks cannot be sent,
//!   and the broker redelivers those messages to whoever consumes next — replayed then,
//!   not written twice. Faithful mode owns what was pushed to it (auto-acknowledged): the
//!   session notices the loss before taking its next message, moves what is still buffered
//!   to [`crate::state::Shared::backlog`] and ends at once, so the next session consumes on
//!   another node while it works through that backlog first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use amqp_link::{AmqpUrl, AmqpUrls, DeclareError};
use futures_lite::StreamExt;
use lapin::message::Delivery as Message;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, ConnectionProperties, Consumer, ErrorKind};
use purchasing_persistence::{IdempotencyKey, ItemCode, SubmitOptions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use wire_contract::amqp::{self as contract, Delivery};

use crate::handling::{Order, StoreFailure, Verdict, decode, judge};
use crate::metrics::Counter;
use crate::shutdown::Shutdown;
use crate::state::{Phase, Shared};

/// Longest time to connect, open a channel, declare the queues and start consuming. A
/// broker host that drops packets would otherwise hold a connect for the kernel's TCP
/// timeout (minutes) before the next attempt.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for the broker to confirm a `basic.cancel` and for the deliveries it
/// pushed before that; past it the connection is closed anyway.
pub const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for the channel and the connection to close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for one ack, nack or reject to be handed to the connection. On a
/// connection that is going away the client library may never answer; an unsettled
/// message is redelivered by the broker anyway, and a session must be able to end (and
/// SIGTERM to end the process) whatever the connection does.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a message whose store call failed in a way that may pass (an I/O error, a
/// refused allocation, the same message id in progress) is held before it is requeued.
/// Holding it keeps its prefetch slot taken, so a failing disk slows the worker down
/// instead of spinning messages through the queue at full speed; one second is long
/// enough for that and short next to how long a message may wait in a queue anyway.
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What this process consumes with, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The brokers, in the order they are tried (shown without their passwords).
    pub urls: AmqpUrls,
    /// Which of them this session connects to: set by the reconnect loop, which moves on
    /// to the next node after each failure (counted round the list).
    pub node: usize,
    /// Which queues to declare and how to acknowledge.
    pub delivery: Delivery,
    /// `basic.qos` prefetch in reliable mode; unused (no limit) in faithful mode.
    pub prefetch: u16,
    /// `--ack-delay-ms`: a pause between writing an order and acknowledging it (fault
    /// injection; zero normally).
    pub ack_delay: Duration,
    /// Reliable mode, set by the reconnect loop after a delivery the AMQP client could not
    /// parse ended a session: consume with a prefetch of 1, so that the unreadable message
    /// comes back alone. The queue counts a delivery for every message a dying connection
    /// held and dead-letters past its delivery limit; at a prefetch of 1 the only message
    /// held when the unreadable one arrives is that one, so only the culprit gets nearer
    /// to the limit. Probation ends with a session that settled a whole prefetch's worth
    /// of messages: the messages returned by the session that died (at most a prefetch,
    /// and returned messages are delivered first) are then behind it, the unreadable one
    /// among them gone to the dead-letter queue.
    pub probation: bool,
}

impl Plan {
    /// The broker this session connects to.
    pub fn url(&self) -> &AmqpUrl {
        self.urls.cycle(self.node)
    }

    /// The prefetch this session asks for.
    fn session_prefetch(&self) -> u16 {
        if self.probation { 1 } else { self.prefetch }
    }
}

/// How a session ended.
#[derive(Debug)]
pub enum Ended {
    /// A shutdown was requested, and the session left the broker cleanly.
    Stopped,
    /// The store refuses orders until a restart; consuming was stopped cleanly.
    StoreFailed(StoreFailure),
    /// The connection failed or was lost.
    Lost(Loss),
    /// A probation session ([`Plan::probation`]) settled a prefetch's worth: the next
    /// session may take the whole prefetch again.
    Promoted,
}

/// How a session that lost (or never got) its connection went.
#[derive(Debug, Default)]
pub struct Loss {
    pub reason: String,
    /// It got as far as consuming.
    pub consumed: bool,
    /// It settled at least one message (faithful: handled one). A session that keeps
    /// failing before any progress — the same unreadable message at the head of the queue
    /// each time — is no reason to reconnect at full speed: the backoff grows.
    pub progressed: bool,
    /// A delivery the AMQP client could not parse ended the connection.
    pub unreadable: bool,
}

/// A failure no reconnect can fix: the process should exit with this message.
#[derive(Debug)]
pub struct Fatal(pub String);

/// Runs one session: connect, declare, consume, leave (see the module doc).
pub async fn run(plan: &Plan, shared: &Shared, shutdown: &mut Shutdown) -> Result<Ended, Fatal> {
    let setup = tokio::select! {
        biased;
        () = shutdown.requested() => return Ok(Ended::Stopped),
        setup = tokio::time::timeout(SETUP_TIMEOUT, connect(plan)) => setup,
    };
    let (connection, channel, mut consumer) = match setup {
        Ok(Ok(setup)) => setup,
        Ok(Err(Setup::Fatal(why))) => return Err(Fatal(why)),
        Ok(Err(Setup::Failed(reason))) => return Ok(Ended::Lost(Loss::before_consuming(reason))),
        Err(_) => {
            return Ok(Ended::Lost(Loss::before_consuming(format!(
                "no answer within {} s (connect, declare, consume)",
                SETUP_TIMEOUT.as_secs()
            ))));
        }
    };
    shared.metrics.set_connected(true);
    shared.status.set(Phase::Consuming, None);
    tracing::info!(
        broker = %plan.url(),
        queue = contract::QUEUE,
        delivery = %plan.delivery,
        prefetch = plan.session_prefetch(),
        probation = plan.probation,
        "consuming"
    );

    let mut work = Work::new(plan, shared);
    let stop = match plan.delivery {
        Delivery::Faithful => work.faithful(&connection, &mut consumer, shutdown).await,
        Delivery::Reliable => work.reliable(&mut consumer, shutdown).await,
    };
    let ended = match stop {
        Stop::Shutdown => {
            shared.status.set(Phase::Stopping, None);
            tracing::info!("stopping: no more deliveries; finishing the orders in hand");
            work.cancel_and_drain(&channel, &mut consumer, Drain::Finish)
                .await;
            Ended::Stopped
        }
        Stop::StoreFailed(reason) => {
            shared
                .status
                .set(Phase::Failing, Some(format!("stopped consuming: {reason}")));
            tracing::error!(%reason, "the store refuses orders until a restart: stopping consuming");
            work.cancel_and_drain(&channel, &mut consumer, Drain::Requeue)
                .await;
            Ended::StoreFailed(reason)
        }
        Stop::Promoted => {
            tracing::info!(
                "the messages returned after the unreadable delivery are settled: \
                 reconnecting with the whole prefetch"
            );
            work.cancel_and_drain(&channel, &mut consumer, Drain::Finish)
                .await;
            Ended::Promoted
        }
        Stop::Lost { reason, unreadable } => {
            shared.status.set(Phase::Reconnecting, Some(reason.clone()));
            if unreadable {
                work.unreadable_delivery(&reason);
            }
            // The deliveries still buffered cannot be acknowledged any more: the broker
            // redelivers them. The orders in progress finish (see the module doc), without
            // waiting on settles that cannot go out.
            work.settlements.connection_gone();
            drop(consumer);
            work.finish().await;
            Ended::Lost(Loss {
                reason,
                consumed: true,
                progressed: work.settlements.count() > 0,
                unreadable,
            })
        }
    };
    shared.metrics.set_connected(false);
    close(&connection, &channel).await;
    Ok(ended)
}

/// Why setting up a session failed.
enum Setup {
    /// Worth retrying (broker down, connection refused, …).
    Failed(String),
    /// Not worth retrying: the queue exists with other properties.
    Fatal(String),
}

/// Connects, opens the channel, declares the mode's queues, sets the prefetch and
/// registers the consumer.
async fn connect(plan: &Plan) -> Result<(Connection, Channel, Consumer), Setup> {
    let failed = |what: &str, error: lapin::Error| Setup::Failed(format!("{what}: {error}"));
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("purchasing-worker[{}]", std::process::id()).into());
    let connection = Connection::connect_uri(plan.url().uri().clone(), properties)
        .await
        .map_err(|e| failed("cannot connect", e))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| failed("cannot open a channel", e))?;
    if let Err(error) = amqp_link::declare_queues(&channel, plan.delivery).await {
        let _ = connection.close(200, "cannot declare".into()).await;
        return Err(match error {
            DeclareError::Mismatch { .. } => Setup::Fatal(error.to_string()),
            DeclareError::Failed { .. } => Setup::Failed(error.to_string()),
        });
    }
    if plan.delivery == Delivery::Reliable {
        channel
            .basic_qos(plan.session_prefetch(), BasicQosOptions::default())
            .await
            .map_err(|e| failed("cannot set the prefetch", e))?;
    }
    let options = BasicConsumeOptions {
        no_ack: plan.delivery == Delivery::Faithful,
        ..BasicConsumeOptions::default()
    };
    let consumer = channel
        .basic_consume(
            contract::QUEUE.into(),
            "".into(),
            options,
            FieldTable::default(),
        )
        .await
        .map_err(|e| failed("cannot consume", e))?;
    Ok((connection, channel, consumer))
}

/// Closes the channel and the connection, politely and within [`CLOSE_TIMEOUT`]; a
/// connection already gone is fine.
async fn close(connection: &Connection, channel: &Channel) {
    let closing = async {
        if channel.status().connected() {
            let _ = channel.close(200, "purchasing-worker done".into()).await;
        }
        if connection.status().connected() {
            let _ = connection.close(200, "purchasing-worker done".into()).await;
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        tracing::warn!("the broker did not confirm the close in time; leaving anyway");
    }
}

/// Why the consuming loop stopped.
enum Stop {
    Shutdown,
    StoreFailed(StoreFailure),
    /// `unreadable`: the client library could not parse a delivery (see [`Loss`]).
    Lost {
        reason: String,
        unreadable: bool,
    },
    /// Probation is over (see [`Plan::probation`]).
    Promoted,
}

impl Stop {
    /// The consumer stream's error: the connection is gone.
    fn lost(error: &lapin::Error) -> Self {
        let unreadable = matches!(error.kind(), ErrorKind::ParsingError(_));
        Stop::Lost {
            reason: error.to_string(),
            unreadable,
        }
    }

    /// The consumer stream ended without an error.
    fn ended(consumer: &Consumer) -> Self {
        Stop::Lost {
            reason: ended_why(consumer),
            unreadable: false,
        }
    }
}

impl Loss {
    fn before_consuming(reason: String) -> Self {
        Loss {
            reason,
            ..Loss::default()
        }
    }
}

/// What to do with deliveries that arrive after the consumer was cancelled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Work on them like any other (shutdown: they are the orders in hand).
    Finish,
    /// Give them back without starting them (the store is failing).
    Requeue,
}

/// The orders of one session.
struct Work {
    /// What every message of the session needs to know (mode, ack delay).
    plan: Plan,
    /// The store the orders go to, and the counters and phase they update.
    shared: Shared,
    /// Reliable mode: one task per delivery, from its store call to its ack. Each returns
    /// the reason if the store failed for good.
    tasks: JoinSet<Option<StoreFailure>>,
    /// Whether the missing-message-id warning was logged (once per process is enough;
    /// the counter has the number).
    warned_missing_id: Arc<AtomicBool>,
    /// Messages settled with the broker in this session (faithful: handled), for
    /// [`Loss::progressed`] and [`Plan::probation`], and whether its connection is gone.
    settlements: Arc<Settlements>,
}

impl Work {
    fn new(plan: &Plan, shared: &Shared) -> Self {
        Self {
            plan: plan.clone(),
            shared: shared.clone(),
            tasks: JoinSet::new(),
            warned_missing_id: Arc::new(AtomicBool::new(false)),
            settlements: Arc::new(Settlements::default()),
        }
    }

    /// Says (and counts) what an unreadable delivery did, by mode.
    fn unreadable_delivery(&self, reason: &str) {
        let metrics = &self.shared.metrics;
        metrics.count(Counter::Unreadable);
        match self.plan.delivery {
            Delivery::Faithful => {
                metrics.count(Counter::Lost);
                tracing::warn!(%reason,
                    "a delivery the AMQP client cannot parse (a property that is not UTF-8, \
                     from a foreign publisher) ended the connection; it was auto-acknowledged, \
                     so it is lost — with any message the broker had pushed behind it (counted \
                     as one: their number is unknown)");
            }
            Delivery::Reliable => {
                tracing::warn!(%reason, delivery_limit = contract::DELIVERY_LIMIT,
                    dead_letter_queue = contract::DEAD_LETTER_QUEUE,
                    "a delivery the AMQP client cannot parse (a property that is not UTF-8, \
                     from a foreign publisher) ended the connection; the queue redelivers it, \
                     counting each delivery, and dead-letters it past its delivery limit; \
                     reconnecting with a prefetch of 1 so that it comes back alone");
            }
        }
    }

    /// The faithful loop: one message at a time, each written before the next is taken.
    async fn faithful(
        &mut self,
        connection: &Connection,
        consumer: &mut Consumer,
        shutdown: &mut Shutdown,
    ) -> Stop {
        loop {
            if shutdown.is_requested() {
                return Stop::Shutdown;
            }
            // Before each message, not only when the stream says so: the stream yields
            // its whole buffer before the error.
            if !connection.status().connected() {
                return self.keep_what_was_pushed(consumer).await;
            }
            let message = match self.shared.backlog_pop() {
                Some(message) => message,
                None => {
                    let next = tokio::select! {
                        biased;
                        () = shutdown.requested() => return Stop::Shutdown,
                        next = consumer.next() => next,
                    };
                    match next {
                        Some(Ok(message)) => message,
                        Some(Err(error)) => return Stop::lost(&error),
                        None => return Stop::ended(consumer),
                    }
                }
            };
            self.received(&message);
            let failed = self.handle_faithful(message).await;
            self.settlements.settled.fetch_add(1, Ordering::Relaxed);
            if let Some(reason) = failed {
                return Stop::StoreFailed(reason);
            }
        }
    }

    /// Faithful mode, the connection gone while deliveries it pushed wait in the consumer:
    /// they were auto-acknowledged, so they move to the backlog for the next session to
    /// handle first, and the session ends now rather than after them — a backlog of
    /// hundreds of orders at the faithful rate is minutes in which nobody would consume
    /// what is published to the queue on the node the publisher moved to.
    async fn keep_what_was_pushed(&mut self, consumer: &mut Consumer) -> Stop {
        loop {
            // Only what is already buffered: an empty stream that has not ended yet would
            // otherwise be waited on.
            match futures_lite::future::poll_once(consumer.next()).await {
                Some(Some(Ok(message))) => self.shared.backlog_push(message),
                Some(Some(Err(error))) => return Stop::lost(&error),
                Some(None) => return Stop::ended(consumer),
                None => {
                    return Stop::Lost {
                        reason: "the connection to the broker was lost".into(),
                        unreadable: false,
                    };
                }
            }
        }
    }

    /// One faithful message; `Some(failure)` when the store failed for good.
    async fn handle_faithful(&self, message: Message) -> Option<StoreFailure> {
        let metrics = &self.shared.metrics;
        let order = match decode(&message.data, None, Delivery::Faithful) {
            Ok(order) => order,
            Err(poison) => {
                metrics.count(Counter::Lost);
                tracing::warn!(reason = %poison, kind = poison.label(),
                    "dropped a message that can never be written; it was auto-acknowledged, \
                     so it is lost (faithful mode has no dead-letter queue)");
                return None;
            }
        };
        match submit(&self.shared, order.code.clone(), None).await {
            Verdict::Written | Verdict::Replayed => {
                metrics.count(Counter::Written);
                tracing::info!("Handling message: {}", order.code.as_str());
                None
            }
            Verdict::Reject(reason) | Verdict::Retry(reason) => {
                metrics.count(Counter::Lost);
                tracing::error!(item = order.code.as_str(), %reason,
                    "the order could not be written; the message was auto-acknowledged, so \
                     it is lost");
                None
            }
            Verdict::Stop(reason) => {
                metrics.count(Counter::Lost);
                tracing::error!(item = order.code.as_str(), %reason,
                    "the order could not be written; the message was auto-acknowledged, so \
                     it is lost");
                Some(reason)
            }
        }
    }

    /// The reliable loop: every delivery becomes a task at once (the prefetch bounds
    /// how many there are).
    async fn reliable(&mut self, consumer: &mut Consumer, shutdown: &mut Shutdown) -> Stop {
        loop {
            tokio::select! {
                biased;
                () = shutdown.requested() => return Stop::Shutdown,
                Some(done) = self.tasks.join_next() => {
                    if let Some(reason) = task_failure(done) {
                        return Stop::StoreFailed(reason);
                    }
                    if self.plan.probation
                        && self.settlements.count() >= u64::from(self.plan.prefetch.max(1))
                    {
                        return Stop::Promoted;
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(message)) => self.spawn_reliable(message),
                    Some(Err(error)) => return Stop::lost(&error),
                    None => return Stop::ended(consumer),
                },
            }
        }
    }

    /// Starts the task that takes one reliable message from decoding to its ack.
    fn spawn_reliable(&mut self, message: Message) {
        self.received(&message);
        let message_id = message
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned());
        let metrics = Arc::clone(&self.shared.metrics);
        let order = match decode(&message.data, message_id.as_deref(), Delivery::Reliable) {
            Ok(order) => order,
            Err(poison) => {
                tracing::warn!(reason = %poison, kind = poison.label(), message_id = ?message_id,
                    "rejecting a message that can never succeed; the broker dead-letters it to {}",
                    contract::DEAD_LETTER_QUEUE);
                let settlements = Arc::clone(&self.settlements);
                self.tasks.spawn(async move {
                    if settle(&message.acker, Settle::Reject, &settlements).await {
                        metrics.count(Counter::Rejected);
                    }
                    None
                });
                return;
            }
        };
        if order.key.is_none() {
            metrics.count(Counter::WithoutMessageId);
            if !self.warned_missing_id.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    item = order.code.as_str(),
                    "a reliable message without a message_id: written without \
                     deduplication, so a redelivery of it could be written twice (logged \
                     once; purchasing_worker_messages_without_message_id_total counts them); \
                     publish with a message_id per order"
                );
            }
        }
        let shared = self.shared.clone();
        let ack_delay = self.plan.ack_delay;
        let settlements = Arc::clone(&self.settlements);
        self.tasks.spawn(async move {
            let Order { code, key } = order;
            let verdict = submit(&shared, code.clone(), key).await;
            let settler = Settler {
                acker: &message.acker,
                settlements: &settlements,
            };
            handle_verdict(&shared, settler, code.as_str(), verdict, ack_delay).await
        });
    }

    fn received(&self, message: &Message) {
        self.shared.metrics.count(Counter::Received);
        if message.redelivered {
            self.shared.metrics.count(Counter::Redelivered);
        }
    }

    /// Cancels the consumer, deals with the deliveries the broker pushed before it
    /// confirmed the cancel (as `drain` says; faithful mode can only count them lost),
    /// and waits for every order in hand.
    async fn cancel_and_drain(&mut self, channel: &Channel, consumer: &mut Consumer, drain: Drain) {
        let faithful = self.plan.delivery == Delivery::Faithful;
        let mut pushed_not_started = 0u64;
        let draining = async {
            if let Err(error) = channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await
            {
                tracing::warn!(%error, "cannot cancel the consumer; closing the connection instead");
                return;
            }
            // After the cancel is confirmed the stream yields what was pushed before it,
            // then ends.
            while let Some(next) = consumer.next().await {
                let Ok(message) = next else { break };
                if faithful {
                    pushed_not_started += 1;
                    continue;
                }
                match drain {
                    Drain::Finish => self.spawn_reliable(message),
                    Drain::Requeue => {
                        self.received(&message);
                        if settle(&message.acker, Settle::Requeue, &self.settlements).await {
                            self.shared.metrics.count(Counter::Requeued);
                        }
                    }
                }
            }
        };
        if tokio::time::timeout(CANCEL_TIMEOUT, draining)
            .await
            .is_err()
        {
            tracing::warn!("the broker did not confirm the cancel in time; closing anyway");
        }
        // Faithful deliveries kept from a lost connection are lost the same way.
        pushed_not_started += self.shared.backlog_take_all() as u64;
        if pushed_not_started > 0 {
            self.shared
                .metrics
                .add(Counter::Received, pushed_not_started);
            self.shared.metrics.add(Counter::Lost, pushed_not_started);
            tracing::warn!(
                lost = pushed_not_started,
                "messages the broker had already pushed (auto-acknowledged) and no order \
                 was started for are lost, as in the original handler"
            );
        }
        self.finish().await;
    }

    /// Waits for every task (reliable mode): each ends with its ack, nack or reject sent
    /// (or found impossible on a lost connection).
    async fn finish(&mut self) {
        while let Some(done) = self.tasks.join_next().await {
            if let Some(reason) = task_failure(done) {
                tracing::debug!(%reason, "an order in hand failed while stopping");
            }
        }
    }
}

/// The reason a task reports a lasting store failure, also for a task that panicked.
fn task_failure(
    done: Result<Option<StoreFailure>, tokio::task::JoinError>,
) -> Option<StoreFailure> {
    match done {
        Ok(failure) => failure,
        Err(error) => Some(StoreFailure::TaskFailed(error.to_string())),
    }
}

/// Why the consumer's stream ended without an error: the broker closed the connection
/// (a clean broker stop does that) or cancelled the consumer (its queue was deleted).
fn ended_why(consumer: &Consumer) -> String {
    format!(
        "the broker ended the consumer on {} (a broker stop or restart closes connections; \
         a deleted queue cancels its consumers)",
        consumer.queue()
    )
}

/// Runs one order's store call on the blocking pool, counted in flight meanwhile.
async fn submit(shared: &Shared, code: ItemCode, key: Option<IdempotencyKey>) -> Verdict {
    let store = Arc::clone(&shared.store);
    let metrics = Arc::clone(&shared.metrics);
    let call = tokio::task::spawn_blocking(move || {
        let _in_flight = metrics.order_started();
        store.submit(
            &code,
            SubmitOptions {
                deadline: None,
                key: key.as_ref(),
            },
        )
    });
    match call.await {
        Ok(result) => judge(result),
        // The store does not panic; if it ever did, the same message would again.
        Err(error) => Verdict::Stop(StoreFailure::Panicked(error.to_string())),
    }
}

/// Acts on a reliable message's verdict; `Some(failure)` when the store failed for good.
async fn handle_verdict(
    shared: &Shared,
    settler: Settler<'_>,
    item: &str,
    verdict: Verdict,
    ack_delay: Duration,
) -> Option<StoreFailure> {
    let metrics = &shared.metrics;
    match verdict {
        Verdict::Written | Verdict::Replayed => {
            let replayed = matches!(verdict, Verdict::Replayed);
            metrics.count(if replayed {
                Counter::Replayed
            } else {
                Counter::Written
            });
            if !ack_delay.is_zero() {
                tokio::time::sleep(ack_delay).await;
            }
            if settler.settle(Settle::Ack).await {
                metrics.count(Counter::Acked);
            }
            if replayed {
                tracing::info!(item, "Handling message: {item} (already written: replayed)");
            } else {
                tracing::info!("Handling message: {item}");
            }
            None
        }
        Verdict::Reject(reason) => {
            tracing::warn!(item, %reason, "rejecting the message to the dead-letter queue: it can never succeed");
            if settler.settle(Settle::Reject).await {
                metrics.count(Counter::Rejected);
            }
            None
        }
        Verdict::Retry(reason) => {
            tracing::warn!(item, %reason, pause_ms = RETRY_PAUSE.as_millis() as u64,
                "the order could not be written; requeueing the message after a pause");
            tokio::time::sleep(RETRY_PAUSE).await;
            if settler.settle(Settle::Requeue).await {
                metrics.count(Counter::Requeued);
            }
            None
        }
        Verdict::Stop(reason) => {
            if settler.settle(Settle::Requeue).await {
                metrics.count(Counter::Requeued);
            }
            Some(reason)
        }
    }
}

/// How a reliable message is settled with the broker.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    /// `basic.reject` without requeue: the queue's dead-letter settings send it on.
    Reject,
    /// `basic.nack` with requeue: back to the queue, for any consumer.
    Requeue,
}

/// What a session's settles share: how many went out, and whether the connection is gone.
#[derive(Debug, Default)]
struct Settlements {
    settled: AtomicU64,
    /// Set once the session knows its connection is lost: a settle then is pointless
    /// (the broker redelivers every unsettled message of a closed connection) and the
    /// client library may not answer it, so none waits any longer.
    gone: watch::Sender<bool>,
}

impl Settlements {
    fn count(&self) -> u64 {
        self.settled.load(Ordering::Relaxed)
    }

    fn connection_gone(&self) {
        self.gone.send_replace(true);
    }
}

/// A message's acker with the session's settlements.
#[derive(Clone, Copy)]
struct Settler<'a> {
    acker: &'a Acker,
    settlements: &'a Settlements,
}

impl Settler<'_> {
    async fn settle(self, how: Settle) -> bool {
        settle(self.acker, how, self.settlements).await
    }
}

/// Sends the settlement, within [`SETTLE_TIMEOUT`] and unless the connection is gone, and
/// counts it; whether it went out. It cannot on a lost connection, and need not: the
/// broker redelivers every message not settled on a connection that closed.
async fn settle(acker: &Acker, settle: Settle, settlements: &Settlements) -> bool {
    let mut gone = settlements.gone.subscribe();
    let sending = async {
        match settle {
            Settle::Ack => acker.ack(BasicAckOptions::default()).await,
            Settle::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
            Settle::Requeue => {
                acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
            }
        }
    };
    let sent = tokio::select! {
        biased;
        _ = gone.wait_for(|gone| *gone) => {
            tracing::debug!(?settle, "not settled: the connection is gone; the broker redelivers the message");
            return false;
        }
        sent = tokio::time::timeout(SETTLE_TIMEOUT, sending) => sent,
    };
    let Ok(sent) = sent else {
        tracing::debug!(
            ?settle,
            "not settled in time: the broker redelivers the message"
        );
        return false;
    };
    match sent {
        Ok(true) => {
            settlements.settled.fetch_add(1, Ordering::Relaxed);
            true
        }
        Ok(false) => {
            tracing::debug!(
                ?settle,
                "not settled: the channel is gone; the broker redelivers the message"
            );
            false
        }
        Err(error) => {
            tracing::debug!(?settle, %error, "not settled: the broker redelivers the message");
            false
        }
    }
}
