//! Synthetic policy sets.
