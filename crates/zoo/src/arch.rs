//! Native ResNet v1/v2 architectures (SPEC §1–2). Being written.
