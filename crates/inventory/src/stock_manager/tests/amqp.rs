//! Managers that publish over AMQP: their settings and message ids (no broker needed).

use super::*;

fn broker() -> AmqpUrl {
    AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap()
}

#[test]
fn amqp_managers_reuse_one_connection_unless_asked_and_say_where_they_publish() {
    let manager = StockManager::amqp_builder(broker(), DeliveryMode::Reliable)
        .build()
        .unwrap();
    assert!(!manager.new_connection_per_request(), "reuse by default");
    assert_eq!(manager.timeout(), DEFAULT_TIMEOUT);
    assert_eq!(manager.delivery_mode(), Some(DeliveryMode::Reliable));
    assert_eq!(manager.base_url(), None);
    assert_eq!(manager.target(), "amqp://guest:***@127.0.0.1:5672/%2f");
    let original = StockManager::amqp_builder(broker(), DeliveryMode::Faithful)
        .new_connection_per_request(true)
        .build()
        .unwrap();
    assert!(original.new_connection_per_request());
    let http = StockManager::new(DEFAULT_URL).unwrap();
    assert_eq!((http.amqp_urls(), http.delivery_mode()), (None, None));
}

#[test]
fn retries_over_amqp_need_reliable_delivery() {
    let policy = Some(RetryPolicy::default());
    let faithful = StockManager::amqp_builder(broker(), DeliveryMode::Faithful)
        .retry_policy(policy)
        .build()
        .unwrap_err();
    assert!(
        faithful
            .to_string()
            .contains("retries over AMQP need reliable delivery"),
        "{faithful}"
    );
    assert!(
        StockManager::amqp_builder(broker(), DeliveryMode::Reliable)
            .retry_policy(policy)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn every_reliable_call_gets_its_own_message_id_and_faithful_ones_none() {
    // Nothing listens: the calls fail, but the ids are decided before sending.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        AmqpUrl::parse(&format!("amqp://{}", listener.local_addr().unwrap())).unwrap()
    };
    let reliable = StockManager::amqp_builder(closed.clone(), DeliveryMode::Reliable)
        .build()
        .unwrap();
    let first = reliable.replenish("1", "req-1").await;
    let second = reliable.replenish("2", "req-2").await;
    assert_eq!(first.result.as_ref().unwrap_err().kind(), "amqp_connect");
    assert_eq!(first.attempts, 1);
    assert!(first.idempotency_key.is_some() && second.idempotency_key.is_some());
    assert_ne!(first.idempotency_key, second.idempotency_key);
    let faithful = StockManager::amqp_builder(closed, DeliveryMode::Faithful)
        .build()
        .unwrap();
    assert_eq!(faithful.replenish("1", "req").await.idempotency_key, None);
    let bad_id = reliable.replenish("1", "a\nb").await;
    assert_eq!(bad_id.attempts, 0);
    assert_eq!(
        bad_id.result.unwrap_err().kind(),
        "invalid_request_id",
        "one request-id rule for both transports"
    );
}
