//! `fwd init`: CA, server and client certificates, ready-to-use profiles.
