//! Work done on events and outbox records: the first pass of a delivery
//! (ingest), the retry worker, replays, and outbox delivery. The first pass,
//! retries and replays all go through [`ingest::process_item`], so a retry
//! behaves exactly like the first attempt.

pub mod ingest;
pub mod outbox;
pub mod pipeline;
pub mod replay;
pub mod retry;
pub mod worker;
