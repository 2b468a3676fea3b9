//! Small tensor helpers the layers share: reading a CPU tensor in place, splitting heads,
//! working on rows in chunks.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::profile;

/// A contiguous f32 CPU tensor's values, read in place (`storage` and `layout` from its
/// `storage_and_layout`).
pub(crate) fn cpu_f32<'a>(storage: &'a candle_core::Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        return Err(candle_core::Error::Msg("expected a tensor on the CPU".into()).into());
    };
    let start = layout.start_offset();
    Ok(&cpu.as_slice::<f32>()?[start..start + layout.shape().elem_count()])
}

/// `[t, heads·head_dim]` → `[1, heads, t, head_dim]`: on a GPU a view (the fused attention
/// kernel and [`Rotary`] read it as it is; what needs it contiguous makes it so), elsewhere a
/// contiguous copy.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    profile::time("split heads", x.device(), || {
        let (t, width) = x.dims2()?;
        let view = x.reshape((1, t, heads, width / heads))?.transpose(1, 2)?;
        Ok(if x.device().is_cuda() { view } else { view.contiguous()? })
    })
}

/// `f` over `x`'s rows, on the CPU `rows` at a time (outputs stacked): a long prompt's MLP
/// keeps `[tokens, intermediate]` activations alive, the largest part of a pass's memory. Only
/// where a row's numbers do not depend on the rows beside it (see [`Linear::rows_independent`]):
/// chunk boundaries move with the batch, and results must not.
pub fn rows_in_chunks(x: &Tensor, rows: usize, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let t = x.dim(0)?;
    if !x.device().is_cpu() || t <= rows {
        return f(x);
    }
    let parts = (0..t).step_by(rows).map(|s| f(&x.narrow(0, s, rows.min(t - s))?)).collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// Checks that a tensor is f32 (the exact path computes everything in f32).
pub fn ensure_f32(t: Tensor) -> Result<Tensor> {
    Ok(if t.dtype() == DType::F32 { t } else { t.to_dtype(DType::F32)? })
}
