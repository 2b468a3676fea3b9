//! CUDA kernels (`*.cu`, compiled to PTX by `build.rs`) and their bindings as candle custom ops.
//! Every op also builds without the `cuda` feature, where its CPU side refuses to run.

pub mod attention;
pub mod launch;
pub mod ops;
