//! vmregions (being written)
