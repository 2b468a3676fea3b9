//! Attention over a pass's blocks (see [`crate::batch::layout`]): the fused CUDA kernel, the
//! fused CPU kernel, or candle's batched products over padded groups or block by block; all the
//! same arithmetic up to float order, in f32 softmax whatever the dtype.

use candle_core::{DType, Tensor};
use invscale_kernels::cpu::attention as cpu_attention;
use invscale_kernels::cuda::attention as cuda_attention;

use crate::error::Result;
use crate::layers::mask::AttnMask;
use crate::layers::tensor::{cpu_f32, ensure_f32};
use crate::profile;

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;

/// Attention over a layout's blocks: each block's queries against the cache, its context and
/// its own keys. `q: [1, h, t, d]`, `k, v: [1, kv_h, past + t, d]`; returns `[t, h·d]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, scale: f64) -> Result<Tensor> {
    let scores = Scores { scale, softcap: mask.softcap };
    profile::time("attention", q.device(), || attention_inner(q, k, v, mask, scores))
}

/// How scores are made of `q · k`: scaled, then soft-capped where the model does.
#[derive(Clone, Copy)]
struct Scores {
    scale: f64,
    softcap: Option<f64>,
}

fn attention_inner(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, scores: Scores) -> Result<Tensor> {
    let scale = scores.scale;
    if let Some(gpu) = &mask.gpu {
        if scores.softcap.is_none()
            && cuda_attention::supported(q.device(), q.dtype(), q.dim(3)?)
            && let Some(fused) = gpu.fused(q.device())?
        {
            return Ok(cuda_attention::attention(q, k, v, fused, scale)?);
        }
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        return attention_inner(&q, &k, &v, gpu.unfused(q.device())?, scores);
    }
    if let Some(padded) = &mask.padded {
        let mut outs = Vec::with_capacity(padded.groups.len());
        for g in &padded.groups {
            // [1, h, t, d] → [n, h, len, d], the group's blocks side by side.
            let stack = |x: &Tensor, rows: &Tensor, len: usize| -> Result<Tensor> {
                let heads = x.dim(1)?;
                let d = x.dim(3)?;
                Ok(x.squeeze(0)?.index_select(rows, 1)?.reshape((heads, g.n, len, d))?.transpose(0, 1)?)
            };
            let (qs, ks, vs) = profile::time("attention: stack", q.device(), || {
                Ok((stack(q, &g.gather_q, g.queries)?, stack(k, &g.gather_kv, g.keys)?, stack(v, &g.gather_kv, g.keys)?))
            })?;
            let heads = qs.dim(1)?;
            let full = match g.full.get() {
                Some(m) if m.dim(1)? == heads && m.dtype() == q.dtype() => m.clone(),
                _ => {
                    let m = g.mask.to_dtype(q.dtype())?.broadcast_as((g.n, heads, g.queries, g.keys))?.contiguous()?;
                    let _ = g.full.set(m.clone());
                    m
                }
            };
            outs.push(attention_block(&qs, &ks, &vs, &full, scores)?);
        }
        return profile::time("attention: unstack", q.device(), || {
            let all = if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(&outs, 0)? };
            Ok(all.index_select(&padded.unpad, 0)?)
        });
    }
    if let [(b, m)] = mask.blocks.as_slice()
        && b.context.is_empty()
    {
        return attention_causal(q, k, v, m, mask.past, scores, mask.f16_kv);
    }
    let mut outs = Vec::with_capacity(mask.blocks.len());
    for (b, m) in &mask.blocks {
        let own = b.queries.start + mask.past..b.queries.end + mask.past;
        let mut ranges: Vec<std::ops::Range<usize>> = Vec::with_capacity(b.context.len() + 2);
        for r in std::iter::once(0..mask.past).chain(b.context.iter().map(|r| r.start + mask.past..r.end + mask.past)).chain([own]) {
            match ranges.last_mut() {
                _ if r.is_empty() => {}
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        }
        let keys = |x: &Tensor| -> Result<Tensor> {
            let parts = ranges.iter().map(|r| x.narrow(2, r.start, r.len())).collect::<candle_core::Result<Vec<_>>>()?;
            Ok(if parts.len() == 1 { parts[0].clone() } else { Tensor::cat(&parts, 2)? })
        };
        let q = q.narrow(2, b.queries.start, b.queries.len())?;
        outs.push(attention_causal(&q, &keys(k)?, &keys(v)?, m, mask.past + b.context_len(), scores, mask.f16_kv)?);
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// [`attention_block`] for one block: on the CPU in f32 by the fused kernel, else (other dtypes,
/// CPUs without AVX2, heads the kernel does not take) on the CPU in chunks of query rows, each against the keys up to its own
/// last row: a row never attends to a later token (`fill_block` opens keys `kj <= qi` only), so
/// the keys left out are -inf in the mask and contribute exactly nothing. A long block's
/// products and softmax then cost about half. `past`: keys before the block's own (cache and context).
fn attention_causal(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, past: usize, scores: Scores, f16_kv: bool) -> Result<Tensor> {
    if scores.softcap.is_none() && q.device().is_cpu() && q.dtype() == DType::F32 && cpu_attention::available(q.dim(3)?) {
        return attention_fused_cpu(q, k, v, mask, scores.scale, f16_kv);
    }
    attention_chunked(q, k, v, mask, past, scores)
}

fn attention_chunked(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, past: usize, scores: Scores) -> Result<Tensor> {
    const CHUNK: usize = 128;
    let t = q.dim(2)?;
    if t <= 2 * CHUNK || !q.device().is_cpu() {
        return attention_block(q, k, v, mask, scores);
    }
    let mut outs = Vec::with_capacity(t.div_ceil(CHUNK));
    for start in (0..t).step_by(CHUNK) {
        let n = CHUNK.min(t - start);
        let keys = past + start + n;
        let m = mask.narrow(2, start, n)?.narrow(3, 0, keys)?;
        outs.push(attention_block(&q.narrow(2, start, n)?, &k.narrow(2, 0, keys)?, &v.narrow(2, 0, keys)?, &m, scores)?);
    }
    Ok(Tensor::cat(&outs, 0)?)
}

/// [`attention_block`] for one block on the CPU in f32, by the fused kernel (which skips, tile
/// by tile, the keys no row of the tile sees).
fn attention_fused_cpu(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64, f16_kv: bool) -> Result<Tensor> {
    let (_, heads, rows, head_dim) = q.dims4()?;
    let (_, kv_heads, keys, _) = k.dims4()?;
    // The tensors' own memory, read in place (copies of q, k, v and the mask were several MB
    // a long prompt's block).
    let tensors = [q.contiguous()?, k.contiguous()?, v.contiguous()?, mask.contiguous()?];
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let slices = guards.iter().map(|(storage, layout)| cpu_f32(storage, layout)).collect::<Result<Vec<&[f32]>>>()?;
    let dims = cpu_attention::Dims { heads, kv_heads, rows, keys, head_dim };
    let out = cpu_attention::attention(slices[0], slices[1], slices[2], slices[3], dims, scale as f32, f16_kv);
    drop(guards);
    Ok(Tensor::from_vec(out, (rows, heads * head_dim), q.device())?)
}

/// `softmax(q kᵀ · scale + mask) v` with grouped-query heads; `q: [b, h, t, d]`,
/// `k, v: [b, kv_h, s, d]`, `mask: [b or 1, 1, t, s]`. Returns `[b·t, h·d]`.
fn attention_block(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scores: Scores) -> Result<Tensor> {
    let (b, heads, t, head_dim) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let (k, v) = if kv_heads == heads {
        (k.clone(), v.clone())
    } else {
        let rep = heads / kv_heads;
        let repeat = |x: &Tensor| -> Result<Tensor> {
            let (b, kvh, s, d) = x.dims4()?;
            Ok(x.unsqueeze(2)?.expand((b, kvh, rep, s, d))?.reshape((b, kvh * rep, s, d))?)
        };
        (repeat(&k)?, repeat(&v)?)
    };
    // Softmax in f32 whatever the dtype, cast back for the product with v (as transformers does
    // in half precision).
    let dev = q.device();
    let scores = profile::time("attention: q·k", dev, || {
        let s = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scores.scale)?;
        Ok(match scores.softcap {
            Some(cap) => ((s / cap)?.tanh()? * cap)?,
            None => s,
        })
    })?;
    let probs = profile::time("attention: softmax", dev, || {
        // The mask holds 0 and -inf only, so adding it before the cast to f32 is exact; a mask of
        // the scores' own shape and dtype makes it a plain elementwise add.
        let scores = if mask.dims() == scores.dims() && mask.dtype() == scores.dtype() {
            ensure_f32((scores + mask)?)?
        } else {
            ensure_f32(scores)?.broadcast_add(mask)?
        };
        Ok(candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(q.dtype())?)
    })?;
    profile::time("attention: p·v", dev, || {
        let out = probs.matmul(&v.contiguous()?)?; // [b, h, t, d]
        Ok(out.transpose(1, 2)?.reshape((b * t, heads * head_dim))?)
    })
}
