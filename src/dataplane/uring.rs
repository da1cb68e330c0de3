//! io_uring driver (placeholder until the ring implementation lands).
use std::io;
use std::sync::atomic::AtomicBool;

use super::{ShardHandler, ShardIo, ShardOptions};

pub(crate) fn probe() -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

pub(crate) fn run<H: ShardHandler>(io: ShardIo, handler: H, stop: &AtomicBool, opts: &ShardOptions) -> io::Result<()> {
    super::poll::run(io, handler, stop, opts)
}
