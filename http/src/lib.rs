//! The HTTP front end (hyper): routing, JSON in and out, status codes, auth and long-poll
//! bookkeeping, on top of `queen-engine`. No SQL lives here.
//!
//! The routes of the API contract arrive with the HTTP issue; until then this crate is empty.
