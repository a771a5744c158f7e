//! xv6-user (being written)
