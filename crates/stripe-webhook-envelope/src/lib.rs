//! Envelope v1: turns a verified Stripe webhook body into one archive record.
//!
//! (Crate docs, `encode` and its tests are being written: see issue 2.)

mod record;

pub use record::{ARCHIVE_PREFIX, EventMeta, Partition, ReceivedAt, Record};
