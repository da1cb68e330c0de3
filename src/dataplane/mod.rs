//! Shards: per-core event loops, io_uring and fallback drivers, batching.
