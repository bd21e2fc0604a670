//! One attempt over HTTP: the request sent, and each kind of answer or failure.

use super::*;

#[tokio::test]
async fn sends_the_originals_request_and_accepts_201() {
    let peer = peer(Some(CREATED.to_owned()));
    let result = manager(peer.addr)
        .request_stock_replenishment_with_id("123", "req-1")
        .await;
    assert!(result.is_ok(), "{result:?}");
    let request = peer.requests.recv_timeout(LIMIT).unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(
        request.starts_with(&format!("POST {} HTTP/1.1\r\n", wire::REPLENISHMENT_PATH)),
        "{request}"
    );
    assert!(
        lower.contains(&format!(
            "\r\ncontent-type: {}\r\n",
            wire::FORM_CONTENT_TYPE
        )),
        "{request}"
    );
    assert!(lower.contains("\r\ncontent-length: 4\r\n"), "{request}");
    assert!(
        lower.contains(&format!("\r\n{}: req-1\r\n", wire::REQUEST_ID_HEADER)),
        "{request}"
    );
    assert!(request.ends_with("\r\n\r\n=123"), "{request}");
}

#[tokio::test]
async fn a_fresh_request_id_is_sent_by_default() {
    let peer = peer(Some(CREATED.to_owned()));
    manager(peer.addr)
        .request_stock_replenishment("123")
        .await
        .unwrap();
    let request = peer
        .requests
        .recv_timeout(LIMIT)
        .unwrap()
        .to_ascii_lowercase();
    let id = request
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}: ", wire::REQUEST_ID_HEADER)))
        .expect("a request id header");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test]
async fn any_2xx_is_success() {
    let peer = peer(Some("HTTP/1.1 204 No Content\r\n\r\n".to_owned()));
    assert!(
        manager(peer.addr)
            .request_stock_replenishment("123")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_problem_document_is_read_into_the_rejection() {
    let peer = peer(Some(response(
        "400 Bad Request",
        wire_contract::http::PROBLEM_JSON,
        r#"{"type":"about:blank","title":"Invalid item code","status":400,
            "detail":"it contains a control character"}"#,
    )));
    let error = manager(peer.addr)
        .request_stock_replenishment("a\tb")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "rejected");
    assert!(
        matches!(&error, ReplenishmentError::Rejected { status: 400, title: Some(t), detail: Some(d) }
            if t == "Invalid item code" && d == "it contains a control character"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the purchasing API rejected the request: 400 Bad Request: it contains a control character"
    );
    assert!(
        peer.requests
            .recv_timeout(LIMIT)
            .unwrap()
            .ends_with("\r\n\r\n=a%09b")
    );
}

#[tokio::test]
async fn any_other_refusal_body_is_tolerated() {
    let peer = peer(Some(response(
        "502 Bad Gateway",
        "text/html",
        "<h1>upstream down</h1>",
    )));
    let error = manager(peer.addr)
        .request_stock_replenishment("123")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ReplenishmentError::Rejected {
                status: 502,
                title: None,
                detail: None
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the purchasing API rejected the request: 502 Bad Gateway"
    );
}

#[tokio::test]
async fn a_redirect_is_a_rejection_not_followed() {
    let peer = peer(Some(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n"
            .to_owned(),
    ));
    let error = manager(peer.addr)
        .request_stock_replenishment("123")
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(302), "{error:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_after_the_configured_deadline() {
    // Accepts (the kernel completes the handshake from the backlog) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let manager = StockManager::builder(url)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = manager
        .request_stock_replenishment("123")
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), "timed_out", "{error:?}");
    assert_eq!(
        error.to_string(),
        "no answer from the purchasing API within 200ms (timed out)"
    );
    drop(listener);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = manager(addr)
        .request_stock_replenishment("123")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "connect", "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "could not connect to the purchasing API at http://{addr}: connection refused \
             — is purchasing-api running?"
        )
    );
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_a_transport_error() {
    let peer = peer(None);
    let error = manager(peer.addr)
        .request_stock_replenishment("123")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "transport", "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with("the request to the purchasing API failed: "),
        "{message}"
    );
    assert!(
        !message.contains("error sending request"),
        "root cause expected: {message}"
    );
    // The request did arrive: after a transport failure the order's fate is unknown.
    assert!(peer.requests.recv_timeout(LIMIT).is_ok());
}

#[tokio::test]
async fn an_unsendable_request_id_is_refused_before_sending() {
    let peer = peer(Some(CREATED.to_owned()));
    let error = manager(peer.addr)
        .request_stock_replenishment_with_id("123", "a\nb")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "invalid_request_id");
    assert!(
        peer.connections
            .recv_timeout(Duration::from_millis(200))
            .is_err()
    );
}

async fn connections_for_two_calls(new_connection_per_request: bool) -> usize {
    let peer = peer(Some(CREATED.to_owned()));
    let url = BaseUrl::parse(&format!("http://{}", peer.addr)).unwrap();
    let manager = StockManager::builder(url)
        .new_connection_per_request(new_connection_per_request)
        .build()
        .unwrap();
    assert_eq!(
        manager.new_connection_per_request(),
        new_connection_per_request
    );
    manager.request_stock_replenishment("1").await.unwrap();
    manager.request_stock_replenishment("2").await.unwrap();
    assert_eq!(peer.requests.iter().take(2).count(), 2);
    peer.connections.try_iter().last().unwrap_or(0)
}

#[tokio::test]
async fn by_default_each_call_opens_its_own_connection_like_the_original() {
    assert_eq!(connections_for_two_calls(true).await, 2);
    assert!(manager("127.0.0.1:1".parse().unwrap()).new_connection_per_request());
}

#[tokio::test]
async fn connections_can_be_reused_instead() {
    assert_eq!(connections_for_two_calls(false).await, 1);
}

#[tokio::test]
async fn a_kept_alive_connection_the_server_closed_while_idle_is_not_reused() {
    // A server that answers one request per connection (without saying so) and closes it,
    // as a server does whose idle timeout ran out between two calls.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            read_request(&mut stream).unwrap();
            stream.write_all(CREATED.as_bytes()).unwrap();
        }
    });
    let url = BaseUrl::parse(&format!("http://{addr}")).unwrap();
    let manager = StockManager::builder(url)
        .new_connection_per_request(false)
        .build()
        .unwrap();
    manager.request_stock_replenishment("1").await.unwrap();
    server_gone_quiet().await;
    let second = manager.request_stock_replenishment("2").await;
    assert!(second.is_ok(), "{second:?}");
    server.join().unwrap();
}

/// Time for a close on loopback to reach the client.
async fn server_gone_quiet() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[test]
fn defaults_are_the_originals() {
    let manager = StockManager::new(DEFAULT_URL).unwrap();
    assert_eq!(manager.timeout(), Duration::from_secs(30));
    assert_eq!(
        manager.base_url().unwrap().as_str(),
        "http://127.0.0.1:8080"
    );
    let Transport::Http(http) = &manager.transport else {
        panic!("an HTTP manager");
    };
    assert_eq!(http.path, wire::REPLENISHMENT_PATH);
    assert_eq!(http.host_header, "127.0.0.1:8080");
    assert_eq!((http.host.as_str(), http.port), ("127.0.0.1", 8080));
}

#[test]
fn the_host_and_the_target_come_from_the_base_url() {
    let manager = StockManager::new("http://[::1]/shop/").unwrap();
    let Transport::Http(http) = &manager.transport else {
        panic!("an HTTP manager");
    };
    assert_eq!(
        http.path,
        format!("/shop{}", wire::REPLENISHMENT_PATH).as_str()
    );
    assert_eq!(http.host_header, "[::1]");
    assert_eq!((http.host.as_str(), http.port), ("::1", 80));
}

#[test]
fn construction_rejects_unusable_urls() {
    assert!(matches!(
        StockManager::new("https://vm"),
        Err(ConfigError::HttpsNotSupported { .. })
    ));
    assert!(matches!(
        StockManager::new("vm:8080"),
        Err(ConfigError::InvalidUrl { .. })
    ));
}
