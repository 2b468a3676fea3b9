//! Process-wide settings of a CPU run: candle's thread count pinned once, glibc's allocator
//! thresholds, and handing freed memory back to the system.

/// Call first thing in `main`, before any thread starts. candle asks for its CPU thread count at
/// every matrix product, and unless `RAYON_NUM_THREADS` is set that count comes from parsing
/// `/proc/cpuinfo` (`num_cpus::get_physical`) each time: 13% of a small model's CPU run. Asked
/// once here and pinned in the environment, the count (and so every result) is the same.
pub fn pin_cpu_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // Safety: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

/// Call first thing in `main`, before any thread starts. candle attaches a backtrace to each of
/// its errors when `RUST_BACKTRACE` is set (common among Rust users), and its text is part of the
/// error's message: a bad GGUF then printed its located message followed by 50 lines of frames.
/// Bad input is the user's to fix and its message says where, so errors capture none:
/// `RUST_LIB_BACKTRACE=0` (which `std::backtrace::Backtrace::capture` reads before
/// `RUST_BACKTRACE`) unless the user set it. A panic, an internal error, still prints its
/// backtrace under `RUST_BACKTRACE=1`: the panic hook reads only that variable.
pub fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Safety: no other thread exists yet to read the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// The most resident memory this process has held so far (Linux's `VmHWM`), in bytes: what a
/// run needed at its peak, weights, activations and all.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
    Some(kb * 1024)
}

/// Call at the start of a CPU run: fixes glibc's thresholds for a process that allocates the
/// same large activation buffers pass after pass. By default a buffer over 128 KiB is its own `mmap`,
/// faulted in page by page and unmapped when freed, until a freed one raises the threshold; a
/// run whose loading freed no large block (the GGUF tokenizers keep none) stays there: Gemma 3's
/// quantized hindsight-neglect took 3.4 M page faults instead of 0.5 M, and 15% longer. Buffers up
/// to 32 MiB now come from the heap and stay there between passes (after each CPU pass the heap's
/// free pages are still handed back, see `release_freed_memory`), so peak RSS is unchanged. Not
/// measured on a GPU run, which therefore keeps glibc's defaults.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets allocator parameters (under the arena's lock).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

/// Hands the memory the allocator holds free back to the system. glibc keeps freed heap memory
/// for reuse, so peak RSS would count garbage: building Gemma 3's 262k-token tokenizer leaves
/// ~130 MB of it (merge lists and such), and a pass's activations more. Cheap (a walk over the
/// free lists) next to a load or a forward pass.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only returns free pages of its arenas to the system.
        unsafe { malloc_trim(0) };
    }
}
