//! IPv4/IPv6 address pools and the ifconfig-pool-persist file.
