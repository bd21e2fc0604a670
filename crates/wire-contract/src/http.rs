//! The HTTP half of the contract: paths, media types and header names (header names in
//! lower case, as HTTP/2 requires and HTTP/1.1 allows; they are case-insensitive).

/// The orders endpoint: the original ASP.NET Web API controller's default route
/// (`/api/{controller}`). The server matches it without regard to case, as ASP.NET did.
pub const REPLENISHMENT_PATH: &str = "/api/StockReplenishmentRequests";

/// Liveness and readiness probe for load balancers.
pub const HEALTH_PATH: &str = "/health";

/// Prometheus text exposition.
pub const METRICS_PATH: &str = "/metrics";

/// The original client's media type: ASP.NET's form formatter binds `[FromBody] string
/// itemCode` from a body of `=CODE` (one unnamed field) or `itemCode=CODE`.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The named form field the server also accepts (any letter case, as model binding).
pub const FORM_KEY: &str = "itemCode";

/// The largest request body the server reads. An item code is at most 100 characters;
/// even fully percent-encoded 4-byte characters (12 bytes each) plus a key fit in well
/// under this, so anything bigger is not an order.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// Correlates one call across the client, the server's log and the lab's records: taken
/// from the client when sensible, generated otherwise, echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// One key per logical order, the same on every attempt: the server writes the order once
/// and replays the outcome to a retry (IETF httpapi draft "The Idempotency-Key HTTP Header
/// Field").
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The whole milliseconds the client will still wait for this attempt: a relative budget,
/// so the client's and the server's clocks need not agree (as gRPC's `grpc-timeout`).
pub const REQUEST_BUDGET_HEADER: &str = "x-request-budget-ms";

/// The server's mark on an answer replayed from an earlier attempt with the same key:
/// `Idempotent-Replayed: true`.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// The media type of every error body (RFC 9457 problem details).
pub const PROBLEM_JSON: &str = "application/problem+json";
