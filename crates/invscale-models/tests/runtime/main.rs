//! The model runtime's integration tests, one binary (one link, and each real model loaded once:
//! `invscale_models::testing::shared`). Each module's doc says what it checks against which
//! reference and with which tolerance.

mod branches;
mod common;
mod errors;
mod layer_split;
mod logprobs_real;
mod params;
mod quantized_real;
mod tiny_models;
mod tokenize_real;
