//! Retries: the same key on every attempt, `Retry-After`, the budget and the deadline.

use super::*;

/// A manager with `policy` and `timeout`.
fn retrying(addr: SocketAddr, policy: RetryPolicy, timeout: Duration) -> StockManager {
    let url = BaseUrl::parse(&format!("http://{addr}")).unwrap();
    StockManager::builder(url)
        .timeout(timeout)
        .retry_policy(Some(policy))
        .build()
        .unwrap()
}

/// The default policy with waits of a few milliseconds, for tests about counts.
fn quick() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn retries_are_off_by_default_one_attempt_without_the_new_headers() {
    let peer = peer(status("503 Service Unavailable", "retry-after: 0\r\n"));
    let manager = manager(peer.addr);
    assert!(manager.retry_policy().is_none() && manager.retry_budget().is_none());
    let delivery = manager.replenish("123", "req-1").await;
    assert_eq!(delivery.result.unwrap_err().status(), Some(503));
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.idempotency_key, None);
    assert!(!delivery.budget_denied && !delivery.deadline_denied);
    manager
        .request_stock_replenishment("123")
        .await
        .unwrap_err();
    let requests = received(&peer);
    assert_eq!(requests.len(), 2, "one attempt per call");
    for request in &requests {
        assert_eq!(header(request, wire::IDEMPOTENCY_KEY_HEADER), None);
        assert_eq!(header(request, wire::REQUEST_BUDGET_HEADER), None);
    }
}

#[tokio::test]
async fn every_attempt_carries_the_same_key_and_a_shrinking_budget() {
    // The peer takes 20 ms per answer, so each attempt has visibly less time left.
    let peer = scripted_peer(
        vec![
            status("503 Service Unavailable", ""),
            status("409 Conflict", ""),
            Some(CREATED.to_owned()),
        ],
        Duration::from_millis(20),
    );
    let manager = retrying(peer.addr, quick(), Duration::from_secs(2));
    let delivery = manager.replenish("123", "req-7").await;
    assert!(delivery.result.is_ok(), "{:?}", delivery.result);
    assert_eq!(delivery.attempts, 3);
    assert!(!delivery.replayed && !delivery.budget_denied && !delivery.deadline_denied);
    let key = delivery.idempotency_key.expect("a key under a policy");
    assert_eq!(key.get_version_num(), 4);
    let requests = received(&peer);
    assert_eq!(requests.len(), 3);
    let mut budgets = Vec::new();
    for request in &requests {
        assert_eq!(
            header(request, wire::IDEMPOTENCY_KEY_HEADER),
            Some(format!("\"{key}\"").as_str()),
            "{request}"
        );
        assert_eq!(header(request, wire::REQUEST_ID_HEADER), Some("req-7"));
        assert!(request.ends_with("\r\n\r\n=123"), "{request}");
        let budget: u64 = header(request, wire::REQUEST_BUDGET_HEADER)
            .expect("a budget header")
            .parse()
            .unwrap();
        budgets.push(budget);
    }
    // 2 s less the 5 % margin at most, and less on each attempt.
    assert!(budgets[0] <= 1900 && budgets[0] > 1500, "{budgets:?}");
    assert!(budgets.windows(2).all(|w| w[1] < w[0]), "{budgets:?}");
}

#[tokio::test]
async fn retry_after_is_waited_out() {
    let peer = scripted_peer(
        vec![
            status("503 Service Unavailable", "retry-after: 1\r\n"),
            Some(CREATED.to_owned()),
        ],
        Duration::ZERO,
    );
    let manager = retrying(peer.addr, RetryPolicy::default(), DEFAULT_TIMEOUT);
    let started = Instant::now();
    let delivery = manager.replenish("123", "req-1").await;
    let elapsed = started.elapsed();
    assert!(delivery.result.is_ok(), "{:?}", delivery.result);
    assert_eq!(delivery.attempts, 2);
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    // Retry-After plus at most the first retry's jitter ceiling (100 ms), plus slack.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn a_request_the_server_calls_wrong_is_not_retried() {
    for (line, code) in [
        ("400 Bad Request", 400),
        ("404 Not Found", 404),
        ("413 Payload Too Large", 413),
        ("422 Unprocessable Entity", 422),
    ] {
        let peer = peer(status(line, ""));
        let delivery = retrying(peer.addr, quick(), DEFAULT_TIMEOUT)
            .replenish("123", "req-1")
            .await;
        assert_eq!(delivery.result.unwrap_err().status(), Some(code));
        assert_eq!(delivery.attempts, 1, "{code}");
        assert!(!delivery.budget_denied && !delivery.deadline_denied);
        assert_eq!(received(&peer).len(), 1, "{code}");
    }
}

#[tokio::test]
async fn when_attempts_run_out_the_last_error_is_returned() {
    let peer = scripted_peer(
        vec![
            status("503 Service Unavailable", ""),
            status("502 Bad Gateway", ""),
            status("500 Internal Server Error", ""),
            Some(CREATED.to_owned()),
        ],
        Duration::ZERO,
    );
    let manager = retrying(peer.addr, quick(), DEFAULT_TIMEOUT);
    let delivery = manager.replenish("123", "req-1").await;
    assert_eq!(delivery.result.unwrap_err().status(), Some(500));
    assert_eq!(delivery.attempts, 3, "the default policy's limit");
    assert!(!delivery.budget_denied && !delivery.deadline_denied);
    assert_eq!(received(&peer).len(), 3);
    // The plain call reports the same way, under the same policy.
    let error = manager.request_stock_replenishment("1").await;
    assert!(
        error.is_ok(),
        "the script's fourth answer is 201: {error:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_given_up() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let delivery = retrying(addr, quick(), DEFAULT_TIMEOUT)
        .replenish("123", "req-1")
        .await;
    assert_eq!(delivery.result.unwrap_err().kind(), "connect");
    assert_eq!(delivery.attempts, 3);
}

#[tokio::test]
async fn a_broken_exchange_is_retried_and_a_replay_is_reported() {
    // The first attempt is read and then the connection closed without an answer: the
    // order may have been placed. The retry, same key, is answered from the record.
    let peer = scripted_peer(
        vec![
            None,
            status(
                "201 Created",
                &format!("{}: true\r\n", wire::IDEMPOTENT_REPLAYED_HEADER),
            ),
        ],
        Duration::ZERO,
    );
    let delivery = retrying(peer.addr, quick(), DEFAULT_TIMEOUT)
        .replenish("123", "req-1")
        .await;
    assert!(delivery.result.is_ok(), "{:?}", delivery.result);
    assert_eq!(delivery.attempts, 2);
    assert!(delivery.replayed);
    let requests = received(&peer);
    assert_eq!(
        header(&requests[0], wire::IDEMPOTENCY_KEY_HEADER),
        header(&requests[1], wire::IDEMPOTENCY_KEY_HEADER)
    );
}

#[tokio::test]
async fn the_retry_budget_keeps_a_failing_spike_from_multiplying() {
    let peer = peer(status("503 Service Unavailable", ""));
    let manager = retrying(peer.addr, quick(), DEFAULT_TIMEOUT);
    const REQUESTS: u32 = 100;
    // Concurrent calls on clones: they share one budget.
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..REQUESTS {
        let manager = manager.clone();
        calls.spawn(async move { manager.replenish("123", &format!("req-{n}")).await });
    }
    let (mut attempts, mut denied) = (0, 0);
    while let Some(delivery) = calls.join_next().await {
        let delivery = delivery.unwrap();
        assert_eq!(delivery.result.unwrap_err().status(), Some(503));
        attempts += delivery.attempts;
        denied += u32::from(delivery.budget_denied);
    }
    // Initial allowance (max_attempts − 1 = 2) + 10 % of the requests, not 3×.
    let bound = REQUESTS + REQUESTS / 10 + 2;
    assert!(
        (REQUESTS..=bound).contains(&attempts),
        "{attempts} attempts for {REQUESTS} requests"
    );
    assert!(denied >= REQUESTS - (bound - REQUESTS), "{denied} denied");
    assert_eq!(
        received(&peer).len(),
        attempts as usize,
        "the server agrees"
    );
    assert!(manager.retry_budget().unwrap().tokens() < 1.0);
}

#[tokio::test]
async fn managers_can_share_one_budget() {
    let url = BaseUrl::parse("http://127.0.0.1:1").unwrap();
    let policy = RetryPolicy::default();
    let budget = RetryBudget::new(&policy);
    let build = || {
        StockManager::builder(url.clone())
            .retry_policy(Some(policy))
            .retry_budget(budget.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    assert!(a.retry_budget().unwrap().try_withdraw());
    assert!(b.retry_budget().unwrap().try_withdraw());
    assert!(
        !a.retry_budget().unwrap().try_withdraw(),
        "both drew on one"
    );
    assert_eq!(a.retry_policy(), Some(&policy));
}

#[tokio::test]
async fn no_wait_runs_past_the_deadline() {
    let peer = peer(status("503 Service Unavailable", "retry-after: 5\r\n"));
    let manager = retrying(peer.addr, RetryPolicy::default(), Duration::from_secs(1));
    let started = Instant::now();
    let delivery = manager.replenish("123", "req-1").await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
    assert_eq!(delivery.result.unwrap_err().status(), Some(503));
    assert_eq!(delivery.attempts, 1);
    assert!(delivery.deadline_denied && !delivery.budget_denied);
    // The retry that was not made cost no token: 2 initial + 0.1 deposited.
    assert_eq!(manager.retry_budget().unwrap().tokens(), 2.1);
}

#[tokio::test]
async fn the_timeout_bounds_all_attempts_and_waits_together() {
    // Each answer takes 150 ms and waits are up to 400 ms: ten attempts would need
    // seconds, the timeout allows one.
    let peer = scripted_peer(
        vec![status("503 Service Unavailable", "")],
        Duration::from_millis(150),
    );
    let policy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(400),
        max_delay: Duration::from_millis(400),
        ..RetryPolicy::default()
    };
    let manager = retrying(peer.addr, policy, Duration::from_secs(1));
    let started = Instant::now();
    let delivery = manager.replenish("123", "req-1").await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
    assert!(delivery.attempts < 10, "{}", delivery.attempts);
    // Ended by the deadline, not by the attempts or the budget (9 initial tokens): either
    // a wait would have left too little time, or the last attempt, started with at least
    // MIN_ATTEMPT_TIME left, was cut off at the deadline itself.
    assert!(delivery.deadline_denied, "{delivery:?}");
    let error = delivery.result.unwrap_err();
    assert!(
        error.status() == Some(503) || error.kind() == "timed_out",
        "{error:?}"
    );
}

#[tokio::test]
async fn a_silent_server_under_a_policy_times_out_once_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let manager = retrying(
        listener.local_addr().unwrap(),
        RetryPolicy::default(),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let delivery = manager.replenish("123", "req-1").await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let error = delivery.result.unwrap_err();
    assert_eq!(error.kind(), "timed_out");
    assert_eq!(
        error.to_string(),
        "no answer from the purchasing API within 300ms (timed out)"
    );
    assert_eq!(delivery.attempts, 1);
    drop(listener);
}

#[tokio::test]
async fn a_single_attempt_policy_sends_the_headers_but_never_retries() {
    let peer = peer(status("503 Service Unavailable", ""));
    let delivery = retrying(
        peer.addr,
        RetryPolicy::with_max_attempts(1),
        DEFAULT_TIMEOUT,
    )
    .replenish("123", "req-1")
    .await;
    assert_eq!(delivery.attempts, 1);
    assert!(!delivery.budget_denied && !delivery.deadline_denied);
    let requests = received(&peer);
    assert_eq!(requests.len(), 1);
    assert!(header(&requests[0], wire::IDEMPOTENCY_KEY_HEADER).is_some());
    assert!(header(&requests[0], wire::REQUEST_BUDGET_HEADER).is_some());
}

#[tokio::test]
async fn an_unsendable_request_id_makes_no_attempt_under_a_policy_either() {
    let peer = peer(Some(CREATED.to_owned()));
    let manager = retrying(peer.addr, quick(), DEFAULT_TIMEOUT);
    let delivery = manager.replenish("123", "a\nb").await;
    assert_eq!(delivery.result.unwrap_err().kind(), "invalid_request_id");
    assert_eq!(delivery.attempts, 0);
    assert_eq!(delivery.idempotency_key, None);
    assert!(
        peer.connections
            .recv_timeout(Duration::from_millis(200))
            .is_err()
    );
    assert_eq!(manager.retry_budget().unwrap().tokens(), 2.0, "no deposit");
}

#[test]
fn an_unusable_policy_is_refused_at_build() {
    let url = BaseUrl::parse(DEFAULT_URL).unwrap();
    let error = StockManager::builder(url)
        .retry_policy(Some(RetryPolicy::with_max_attempts(11)))
        .build()
        .unwrap_err();
    assert!(
        matches!(error, ConfigError::InvalidRetryPolicy { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "invalid retry policy: max_attempts is 11; it must be between 1 and 10"
    );
}
