//! lm-eval YAML task files (an `include:` of itself is the only other file there is).
fn main() {
    let builtin = &invscale_tasks::Registry::builtin().tasks;
    afl::fuzz!(|data: &[u8]| {
        let path = invscale_fuzz::scratch_file("task.yaml", data);
        let _ = invscale_tasks::lm_eval_yaml::task_from_yaml(&path, builtin);
    });
}
