//! Work done on events: the first pass of a delivery (ingest) and, later, the
//! retry worker. Both go through [`ingest::process_items`], so a retry behaves
//! exactly like the first attempt.

pub mod ingest;
pub mod replay;
pub mod retry;
pub mod uploader;
pub mod worker;
