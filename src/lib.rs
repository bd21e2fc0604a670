//! Holds no code: this package exists for the end-to-end tests in `tests/`.
