//! Multi-client server logic: sessions, peer ids, ccd application, push building.
