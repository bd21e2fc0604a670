//! The handlers: small functions with typed extractors; failures become [`Problem`]s.
//!
//! [`Problem`]: crate::problem::Problem

pub mod health;
pub mod metrics;
pub mod orders;

use axum::http::{Method, Uri};

use crate::problem::Problem;

/// Answer for a path that has no route.
pub async fn not_found(uri: Uri) -> Problem {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        format!(
            "there is no resource at {}; orders are posted to {}",
            uri.path(),
            orders::PATH
        ),
    )
}

/// Answer for a known path called with a method it does not support. axum adds the
/// `Allow` header listing the methods the path does support.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not support {method}; see the Allow header",
            uri.path()
        ),
    )
}
