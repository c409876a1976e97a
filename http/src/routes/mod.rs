//! Route handlers, by area of the contract.

pub(crate) mod messages;
pub(crate) mod ops;
pub(crate) mod queues;
