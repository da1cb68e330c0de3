//! Client state machine: connect, apply pushed configuration, reconnect.
