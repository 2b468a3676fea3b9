//! RMSNorm in f32 on the CPU: `x · 1/√(mean(x²) + ε) · w`, row by row. candle's CPU op sums
//! each row's squares one after another (a chain of dependent adds the compiler may not
//! reorder), which made the norms 4% of a long prompt's forward pass; here the squares go
//! into 16 independent lanes (vectorised by the compiler) added in one fixed order
//! ([`super::sum16`]), so the result does not depend on the CPU or the rows beside it.

/// Rows at most a task takes.
const ROWS_PER_TASK: usize = 64;

/// `out[r] = x[r] / √(mean(x[r]²) + eps) · w` for each row of `dim` values.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let dim = w.len();
    assert!(dim > 0 && x.len().is_multiple_of(dim), "x holds whole rows of {dim} values");
    assert_eq!(out.len(), x.len());
    let rows = x.len() / dim;
    struct Out(*mut f32);
    unsafe impl Sync for Out {}
    let dst = &Out(out.as_mut_ptr());
    let task = |t: usize| {
        let dst = dst;
        for r in t * ROWS_PER_TASK..(t * ROWS_PER_TASK + ROWS_PER_TASK).min(rows) {
            // SAFETY: each task writes its own rows, in bounds by the asserts.
            let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(r * dim), dim) };
            norm_row(&x[r * dim..(r + 1) * dim], w, eps, o);
        }
    };
    let tasks = rows.div_ceil(ROWS_PER_TASK);
    if tasks == 1 {
        (0..tasks).for_each(task);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(tasks, |range| range.for_each(task));
    }
}

/// The mean of a row's squares: 16 lanes, lane `l` the squares `i ≡ l mod 16` in order, then
/// the last `len mod 16` in order.
fn mean_square(x: &[f32]) -> f32 {
    let whole = x.len() / 16 * 16;
    let mut lanes = [0f32; 16];
    for chunk in x[..whole].chunks_exact(16) {
        for (a, &v) in lanes.iter_mut().zip(chunk) {
            *a += v * v;
        }
    }
    let sum = x[whole..].iter().fold(super::sum16(lanes), |s, &v| s + v * v);
    sum / x.len() as f32
}

fn norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let inv = 1.0 / (mean_square(x) + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition in f64 to f32 rounding, on rows not a multiple of 16 long and a row count
    /// that several tasks share; a row's result is the same computed alone.
    #[test]
    fn rms_norm_is_the_definition_and_rows_are_independent() {
        for &(rows, dim) in &[(1, 1), (3, 37), (200, 576), (130, 640)] {
            let x: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0).collect();
            let w: Vec<f32> = (0..dim).map(|i| 1.0 + (i % 13) as f32 / 10.0).collect();
            let mut out = vec![0f32; rows * dim];
            rms_norm(&x, &w, 1e-6, &mut out);
            for r in 0..rows {
                let row = &x[r * dim..(r + 1) * dim];
                let ms: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / dim as f64;
                let inv = 1.0 / (ms + 1e-6).sqrt();
                for c in 0..dim {
                    let want = f64::from(row[c]) * inv * f64::from(w[c]);
                    let got = f64::from(out[r * dim + c]);
                    assert!((got - want).abs() <= 4e-7 * want.abs().max(1e-3), "row {r} col {c}: {got} vs {want}");
                }
                let mut alone = vec![0f32; dim];
                rms_norm(row, &w, 1e-6, &mut alone);
                assert_eq!(alone, out[r * dim..(r + 1) * dim], "row {r} alone");
            }
        }
    }
}
