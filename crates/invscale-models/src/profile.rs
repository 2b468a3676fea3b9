//! `INVSCALE_PROFILE=2`: time spent per kind of layer work, the device synchronised around each
//! piece (slower, but it says where a forward pass goes). Level 1 times whole passes only, and
//! stamps a timeline of the run.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

use candle_core::Device;

use crate::error::Result;

thread_local! {
    static SPENT: RefCell<Vec<(&'static str, f64)>> = const { RefCell::new(Vec::new()) };
}

pub fn level() -> u8 {
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| std::env::var("INVSCALE_PROFILE").ok().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Runs `f`, adding its time to `label` at level 2.
pub fn time<T>(label: &'static str, device: &Device, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if level() < 2 {
        return f();
    }
    device.synchronize()?;
    let started = Instant::now();
    let out = f()?;
    device.synchronize()?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    SPENT.with(|s| {
        let mut s = s.borrow_mut();
        match s.iter_mut().find(|(l, _)| *l == label) {
            Some((_, total)) => *total += ms,
            None => s.push((label, ms)),
        }
    });
    Ok(out)
}

/// At level 1 and above: `what` with the time since the first stamp, a timeline of a run
/// (the gaps between its lines are where host work went).
pub fn stamp(what: impl std::fmt::Display) {
    static FIRST: OnceLock<Instant> = OnceLock::new();
    if level() >= 1 {
        eprintln!("profile: at {:.1} ms: {what}", FIRST.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3);
    }
}

/// What was timed since the last call, `label ms` pairs.
pub fn take() -> String {
    SPENT.with(|s| s.borrow_mut().drain(..).map(|(l, ms)| format!("{l} {ms:.1} ms")).collect::<Vec<_>>().join(", "))
}
