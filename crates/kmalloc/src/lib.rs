//! kmalloc (being written)
