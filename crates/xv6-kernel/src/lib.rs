//! xv6-kernel (being written)
