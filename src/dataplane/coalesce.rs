//! TCP coalescing for tun writes (being written).
