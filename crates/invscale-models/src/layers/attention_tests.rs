use candle_core::Device;

use super::*;
use crate::batch::layout::Layout;
use crate::batch::prefix_tree::{PrefixTree, SegmentTree};
use crate::layers::mask::SMALL_CELLS;

fn max_diff(a: Tensor, b: Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn qkv(heads: usize, kv_heads: usize, d: usize, t: usize, s: usize) -> (Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let q = Tensor::randn(0f32, 1.0, (1, heads, t, d), &dev).unwrap();
    let k = Tensor::randn(0f32, 1.0, (1, kv_heads, s, d), &dev).unwrap();
    let v = Tensor::randn(0f32, 1.0, (1, kv_heads, s, d), &dev).unwrap();
    (q, k, v)
}

/// Contexts sharing prefixes at several depths (one a prefix of another, one twice), a
/// lone context, and branches of uneven lengths.
fn shared_contexts() -> (SegmentTree, Vec<Vec<u32>>, Vec<Vec<Vec<u32>>>) {
    let header: Vec<u32> = (1..=40).collect();
    let demo: Vec<u32> = (100..130).collect();
    let contexts: Vec<Vec<u32>> = vec![
        [header.clone(), demo.clone(), vec![7, 8, 9]].concat(),
        [header.clone(), demo.clone(), (200..260).collect()].concat(),
        [header.clone(), vec![5; 12]].concat(),
        (300..337).collect(),
        header.clone(),
        [header.clone(), demo.clone(), vec![7, 8, 9]].concat(),
    ];
    let branches: Vec<Vec<Vec<u32>>> = contexts
        .iter()
        .enumerate()
        .map(|(i, _)| (0..(i % 3) + 1).map(|b| (0..(b * 2 + i % 2) as u32).map(|x| 900 + x).collect()).collect())
        .collect();
    let refs: Vec<&[u32]> = contexts.iter().map(Vec::as_slice).collect();
    let mut tree = SegmentTree::new();
    for (c, cuts) in contexts.iter().zip(PrefixTree::shared_cuts(&refs, 8)) {
        tree.insert(c, &cuts);
    }
    (tree, contexts, branches)
}

/// The GPU's padded, stacked attention gives what the per-block attention gives (run here on
/// the CPU, where the same code runs): a forest of trees of uneven sizes and a prefix tree
/// (blocks with shared context), grouped-query heads, with and without a sliding window.
#[test]
fn padded_blocks_equal_block_by_block_attention() {
    let dev = Device::Cpu;
    let trees: Vec<(usize, Vec<usize>)> =
        vec![(37, vec![3, 1]), (5, vec![2, 2, 2]), (64, vec![1]), (30, vec![4, 6]), (9, vec![]), (61, vec![2, 1])];
    let (tree, _, branches) = shared_contexts();
    let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
    for (layout, strict_groups) in [(Layout::forest(&trees), 2..=5), (Layout::prefix_tree(&tree, &refs).0, 2..=usize::MAX)] {
        let t = layout.len();
        let (q, k, v) = qkv(4, 2, 8, t, t);
        for window in [None, Some(7)] {
            let plain = layout.mask_as(window, &dev, false).unwrap();
            let a = attention(&q, &k, &v, &plain, 0.35).unwrap();
            // Grouped strictly (every group within 4/3 of its cells), and as on a GPU (these
            // small blocks all in one group).
            for (small_cells, expected) in [(0, strict_groups.clone()), (SMALL_CELLS, 1..=1)] {
                let padded = layout.padded_mask(window, &dev, small_cells).unwrap();
                let groups = padded.padded.as_ref().unwrap().groups.len();
                assert!(expected.contains(&groups), "{groups} groups for {} blocks", layout.blocks.len());
                let b = attention(&q, &k, &v, &padded, 0.35).unwrap();
                let diff = max_diff(a.clone(), b);
                assert!(diff < 1e-5, "window {window:?}, {groups} groups: max |Δ| {diff}");
            }
        }
    }
}

/// A prefix tree's pass: each context's tokens and branches attend to exactly what running
/// the context and its branches alone attends to. Checked on the masks: for every row of the
/// tree pass, the keys it sees, as (position, token) pairs, are those of the same row alone.
#[test]
fn prefix_tree_rows_see_what_separate_runs_see() {
    let (tree, contexts, branches) = shared_contexts();
    let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
    let (layout, rows) = Layout::prefix_tree(&tree, &refs);
    assert_eq!(rows.ids.len(), layout.len());
    let unique: usize = tree.tokens() + branches.iter().flatten().map(Vec::len).sum::<usize>();
    assert_eq!(layout.len(), unique, "every tree node and every branch once");
    // Keys seen by a row, as (position, token) pairs, from a layout's masks.
    let seen = |layout: &Layout, ids: &[u32], row: usize| -> Vec<(usize, u32)> {
        let b = layout.blocks.iter().find(|b| b.queries.contains(&row)).unwrap();
        let s = b.keys(0);
        let mut m = vec![f32::NEG_INFINITY; b.queries.len() * s];
        layout.fill_block(b, None, &mut m, s);
        let keys: Vec<usize> = b.context.iter().flat_map(|r| r.clone()).chain(b.queries.clone()).collect();
        let i = row - b.queries.start;
        keys.iter().enumerate().filter(|(j, _)| m[i * s + j] == 0.0).map(|(_, &k)| (layout.positions[k], ids[k])).collect()
    };
    for (c, context) in contexts.iter().enumerate() {
        let lens: Vec<usize> = branches[c].iter().map(Vec::len).collect();
        let alone = Layout::branches(0, context.len(), &lens);
        let alone_ids: Vec<u32> = context.iter().chain(branches[c].iter().flatten()).copied().collect();
        let (last, starts) = &rows.contexts[c];
        assert_eq!(rows.ids[*last], *context.last().unwrap());
        assert_eq!(layout.positions[*last], context.len() - 1);
        assert_eq!(seen(&layout, &rows.ids, *last), seen(&alone, &alone_ids, context.len() - 1), "context {c}");
        let mut at = context.len();
        for (b, &start) in branches[c].iter().zip(starts) {
            for j in 0..b.len() {
                assert_eq!(rows.ids[start + j], b[j]);
                assert_eq!(seen(&layout, &rows.ids, start + j), seen(&alone, &alone_ids, at + j), "context {c}, branch row {j}");
            }
            at += b.len();
        }
    }
}

/// `attend(q, k, v, mask)` on each block of `mask` (no context ranges): its queries against
/// the cache and its own keys; the outputs stacked.
fn per_block(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, attend: impl Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Tensor) -> Tensor {
    let mut outs = Vec::new();
    for (b, m) in &mask.blocks {
        let r = &b.queries;
        assert!(b.context.is_empty());
        let keys = |x: &Tensor| {
            let own = x.narrow(2, mask.past + r.start, r.len()).unwrap();
            if mask.past > 0 { Tensor::cat(&[x.narrow(2, 0, mask.past).unwrap(), own], 2).unwrap() } else { own }
        };
        outs.push(attend(&q.narrow(2, r.start, r.len()).unwrap(), &keys(k), &keys(v), m));
    }
    Tensor::cat(&outs, 0).unwrap()
}

/// The same blocks, each as one unfused product over all of its keys.
fn whole_blocks(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask) -> Tensor {
    per_block(q, k, v, mask, |q, k, v, m| attention_block(q, k, v, m, Scores { scale: 0.35, softcap: None }).unwrap())
}

/// Long blocks run in causal chunks of query rows (keys up to each chunk's last row), and on
/// x86-64/AArch64 by the fused kernel; both must give what one product over the whole block
/// gives: a long tree (context and three continuations) beside a short one, then a
/// continuation pass on a cache, with and without a sliding window, with grouped-query heads
/// and head sizes of 8 and 64 (several score micro-tiles, rows not a multiple of the tile).
#[test]
fn causal_chunks_and_fused_kernel_equal_whole_block_attention() {
    let dev = Device::Cpu;
    let long = Layout::forest(&[(700, vec![3, 1, 5]), (40, vec![2])]);
    let cached = Layout::sequence(450, 300);
    for (layout, d) in [(long.clone(), 8), (cached.clone(), 8), (long, 64), (cached, 256)] {
        let t = layout.len();
        let s = layout.past + t;
        let (q, k, v) = qkv(6, 2, d, t, s);
        for window in [None, Some(100)] {
            let mask = layout.mask_as(window, &dev, false).unwrap();
            let whole = whole_blocks(&q, &k, &v, &mask);
            let mut outs = vec![("chunked", per_block(&q, &k, &v, &mask, |q, k, v, m| attention_chunked(q, k, v, m, mask.past, Scores { scale: 0.35, softcap: None }).unwrap()))];
            if cpu_attention::available(d) {
                outs.push(("fused", per_block(&q, &k, &v, &mask, |q, k, v, m| attention_fused_cpu(q, k, v, m, 0.35, false).unwrap())));
            }
            for (name, out) in outs {
                let diff = max_diff(out, whole.clone());
                assert!(diff < 1e-5, "{name}: past {}, window {window:?}, d {d}: max |Δ| {diff}", layout.past);
            }
        }
    }
}

/// The fused CUDA kernel's key ranges, worked out from the segments, are exactly the cells
/// the masks open (`fill_block`), row by row, with and without a window; and every row of
/// these layouts sees at most two ranges (the kernel takes them all).
#[test]
fn seen_ranges_are_the_masks_open_cells() {
    let (tree, _, branches) = shared_contexts();
    let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
    let forest = Layout::forest(&[(150, vec![3, 1, 5]), (40, vec![2]), (7, vec![])]);
    for layout in [Layout::prefix_tree(&tree, &refs).0, forest, Layout::sequence(0, 90), Layout::branches(0, 30, &[4, 2])] {
        let spans = layout.segment_spans();
        for window in [None, Some(1), Some(3), Some(9), Some(45)] {
            for b in &layout.blocks {
                let keys = b.keys(0);
                let mut mask = vec![f32::NEG_INFINITY; b.queries.len() * keys];
                layout.fill_block(b, window, &mut mask, keys);
                let from_mask: Vec<[u32; 4]> = mask.chunks(keys).map(|row| visible_ranges(row).expect("two ranges at most")).collect();
                assert_eq!(layout.seen_ranges(b, window, &spans).unwrap(), from_mask, "block {:?}, window {window:?}", b.queries);
            }
        }
    }
}

/// The fused CUDA kernel gives what the per-block attention gives in f32 on the same
/// half-precision inputs: a prefix tree (blocks with shared context, continuations), a
/// forest with a block longer than a CTA's 64 rows and key tiles none of a tile's rows sees,
/// with and without a sliding window, grouped-query heads, heads of 64 and 128, bf16 and
/// f16. Tolerance: the kernel rounds the probabilities and the output to the half type
/// (unit roundoff 2⁻⁸ for bf16, 2⁻¹¹ for f16), so a value is off by at most
/// 2⁻⁸(|out| + max |v|) ≈ 2⁻⁸(3 + 4.5) ≈ 0.03 in bf16 (0.004 in f16): max |Δ| 3e-2 / 4e-3,
/// and the mean, which rounding keeps near zero, 3e-3 / 4e-4; a wrong mask, key or row moves
/// outputs by O(0.1–1). Needs a GPU: built with `--features cuda` and run on the accelerator
/// machine (see `bench/gpu/RESULTS.md`).
#[cfg(feature = "cuda")]
#[test]
fn fused_cuda_attention_equals_block_attention() {
    let gpu = Device::new_cuda(0).expect("this test needs a CUDA GPU: build the tests with --features cuda and run them on a machine with one");
    let (tree, _, branches) = shared_contexts();
    let refs: Vec<Vec<&[u32]>> = branches.iter().map(|bs| bs.iter().map(Vec::as_slice).collect()).collect();
    let forest = Layout::forest(&[(150, vec![3, 1, 5]), (40, vec![2]), (7, vec![])]);
    for layout in [Layout::prefix_tree(&tree, &refs).0, forest, Layout::sequence(0, 90)] {
        let t = layout.len();
        for (d, dtype, max_tol, mean_tol) in [(64, DType::BF16, 3e-2, 3e-3), (128, DType::BF16, 3e-2, 3e-3), (128, DType::F16, 4e-3, 4e-4)] {
            let (q, k, v) = qkv(4, 2, d, t, t);
            let round = |x: &Tensor| x.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap();
            let (q, k, v) = (round(&q), round(&k), round(&v));
            for window in [None, Some(9)] {
                let reference = attention(&q, &k, &v, &layout.mask_as(window, &Device::Cpu, false).unwrap(), 0.3).unwrap();
                let on_gpu = |x: &Tensor| x.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
                let mask = layout.mask(window, &gpu).unwrap();
                assert!(cuda_attention::supported(&gpu, dtype, d));
                let fused = attention(&on_gpu(&q), &on_gpu(&k), &on_gpu(&v), &mask, 0.3).unwrap();
                // The same from views of `[t, heads · d]` (what `split_heads` gives on a GPU):
                // the same kernel reading by strides, so the same bits.
                let token_major = |x: &Tensor| on_gpu(x).transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
                let strided = attention(&token_major(&q), &token_major(&k), &token_major(&v), &mask, 0.3).unwrap();
                let fused = fused.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap();
                assert_eq!(max_diff(strided.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap(), fused.clone()), 0.0);
                let diff = (fused - reference).unwrap().abs().unwrap().flatten_all().unwrap();
                let max = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
                let mean = diff.mean(0).unwrap().to_scalar::<f32>().unwrap();
                let case = format!("{} blocks, d {d}, {dtype:?}, window {window:?}: max |Δ| {max:.2e}, mean {mean:.2e}", layout.blocks.len());
                eprintln!("{case}");
                assert!(max < max_tol && mean < mean_tol, "{case}");
            }
        }
    }
}

/// The runs of visible cells (0, not -inf) of a mask row as `[a, b, c, d]`: keys `[a, b)` and
/// `[c, d)` (empty ranges as `[0, 0)`); `None` for more than two runs. (What `Layout` works out
/// from its segments, tested against its masks with this.)
fn visible_ranges(row: &[f32]) -> Option<[u32; 4]> {
    let mut runs = Vec::with_capacity(2);
    let mut start = None;
    for (j, &cell) in row.iter().chain([&f32::NEG_INFINITY]).enumerate() {
        match (cell == 0.0, start) {
            (true, None) => start = Some(j),
            (false, Some(a)) => {
                runs.push((a as u32, j as u32));
                start = None;
            }
            _ => {}
        }
    }
    match runs[..] {
        [] => Some([0; 4]),
        [(a, b)] => Some([a, b, 0, 0]),
        [(a, b), (c, d)] => Some([a, b, c, d]),
        _ => None,
    }
}

#[test]
fn visible_ranges_are_the_runs_of_open_cells() {
    let (o, x) = (0.0, f32::NEG_INFINITY);
    assert_eq!(visible_ranges(&[x, x, x]), Some([0, 0, 0, 0]));
    assert_eq!(visible_ranges(&[o, o, x]), Some([0, 2, 0, 0]));
    assert_eq!(visible_ranges(&[x, o, o]), Some([1, 3, 0, 0]));
    assert_eq!(visible_ranges(&[o, x, o, o, x]), Some([0, 1, 2, 4]));
    assert_eq!(visible_ranges(&[o, x, o, x, o]), None);
}
