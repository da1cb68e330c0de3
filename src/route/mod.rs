//! Longest-prefix-match route table (IPv4 + IPv6) and its lock-free publication.
