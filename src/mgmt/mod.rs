//! Management interface, status file and metrics.
