//! The scoring engine's integration tests on the real models and data, one binary (each real
//! model loaded once: `invscale_models::testing::shared`).

mod determinism;
mod lm_eval_parity;
