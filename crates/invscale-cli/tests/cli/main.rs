//! The `invscale` command's integration tests, one binary: the commands end to end
//! (`commands`), and resuming after `kill -9` (`resume`).

mod commands;
mod resume;
