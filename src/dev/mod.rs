//! Developer tools that ship in the binary but are not part of the product: `synth` writes synthetic
//! checkpoints for the example, the tests and the benchmarks (hidden from `--help`). Product modules never
//! import from here; this module may import from them.

pub mod synth;
