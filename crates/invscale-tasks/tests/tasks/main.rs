//! The task suite's integration tests, one binary: the registry and task files, the readers on
//! the real data and the malformed corpus, the Python-literal parser, data from the hub cache.

mod hub_tasks;
mod lm_eval_yaml;
mod malformed;
mod pylit;
mod real_data;
mod registry;
