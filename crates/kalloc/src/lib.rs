//! kalloc (being written)
