//! OS glue: multi-queue tun, netlink (addresses, routes, MTU, link state), UDP sockets.
