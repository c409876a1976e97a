//! Route handlers, by area of the contract.

pub(crate) mod ephemeral;
pub(crate) mod inspect;
pub(crate) mod kv;
pub(crate) mod messages;
pub(crate) mod ops;
pub(crate) mod queues;
pub(crate) mod reads;
pub(crate) mod streams;
