//! The registry of official zoo files (SPEC §2.1). Being written.
