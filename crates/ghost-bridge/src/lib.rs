//! ghost-bridge: where patches enter. An HTTP server, an inbox directory and
//! chat transcripts all feed one [`ingest::Ingestor`], which validates each
//! patch, deduplicates it by id, and answers only once the patch is durable in
//! `queue/<target>/pending/`.

pub mod auth;
pub mod http;
pub mod inbox;
pub mod ingest;
pub mod secrets;
pub mod transcript;
