//! The `invscale` command's integration tests, one binary: the commands end to end
//! (`commands`), resuming after `kill -9` (`resume`), and scoring on a real inference server,
//! through a fault-injecting proxy too (`server`, `proxy`).

mod commands;
mod memory;
mod proxy;
mod resume;
mod server;
