use super::*;

/// A random matrix in `format`, built by packing random values the way the GGUF layout does.
fn random_matrix(format: BlockFormat, rows: usize, cols: usize, seed: u64) -> BlockMatrix {
    matrix(format, rows, cols, seed, None)
}

/// [`random_matrix`] with every byte but the f16 scales (and minima) set to `byte` when given:
/// 0xFF gives the largest unsigned values of each format (15, 31, 63), 0x00 and 0x7F Q8_0's
/// −128 and 127.
fn matrix(format: BlockFormat, rows: usize, cols: usize, seed: u64, byte: Option<u8>) -> BlockMatrix {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let v = (state >> 33) as u32;
        byte.map_or(v, |b| u32::from_le_bytes([b; 4]))
    };
    let mut data = Vec::new();
    let small_half = |v: u32| f16::from_f32(0.001 + (v % 1000) as f32 * 1e-5).to_le_bytes();
    if format.k_quant() {
        // Every byte random but the f16 scales (random bits could be NaN or infinite).
        for _ in 0..rows * (cols / QK_K) {
            let mut block: Vec<u8> = (0..format.block_bytes()).map(|_| next() as u8).collect();
            let at = if format == BlockFormat::Q4K { 0 } else { 208 };
            block[at..at + 2].copy_from_slice(&small_half(next()));
            if format == BlockFormat::Q4K {
                block[2..4].copy_from_slice(&small_half(next()));
            }
            data.extend(block);
        }
        return BlockMatrix::new(format, rows, cols, data).unwrap();
    }
    for _ in 0..rows * (cols / QK) {
        let d = f16::from_f32(0.001 + (next() % 1000) as f32 * 1e-5);
        data.extend(d.to_le_bytes());
        if format.has_min() {
            data.extend(f16::from_f32(-((next() % 1000) as f32) * 1e-4).to_le_bytes());
        }
        match format {
            BlockFormat::Q4_0 | BlockFormat::Q4_1 => (0..16).for_each(|_| data.push(next() as u8)),
            BlockFormat::Q5_0 | BlockFormat::Q5_1 => {
                data.extend(next().to_le_bytes());
                (0..16).for_each(|_| data.push(next() as u8));
            }
            BlockFormat::Q8_0 => (0..32).for_each(|_| data.push(next() as u8)),
            BlockFormat::Q4K | BlockFormat::Q6K => unreachable!(),
        }
    }
    BlockMatrix::new(format, rows, cols, data).unwrap()
}

fn random_acts(m: usize, k: usize) -> Vec<f32> {
    (0..m * k).map(|i| ((i * 7919 % 2003) as f32 / 1001.0 - 1.0) * if i % 97 == 0 { 8.0 } else { 1.0 }).collect()
}

const FORMATS: [BlockFormat; 7] = [
    BlockFormat::Q4_0,
    BlockFormat::Q4_1,
    BlockFormat::Q5_0,
    BlockFormat::Q5_1,
    BlockFormat::Q8_0,
    BlockFormat::Q4K,
    BlockFormat::Q6K,
];

/// A row length of `blocks` of the format's blocks (K-quants: 256 values a block).
fn cols(format: BlockFormat, blocks: usize) -> usize {
    blocks * format.block_values()
}

#[test]
fn unpacking_matches_candles_dequantization() {
    // candle's dequantizers follow ggml's reference C; ours must give the same values.
    use candle_core::quantized::{GgmlDType, QTensor};
    let dtypes = [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K];
    for (format, dtype) in FORMATS.iter().zip(dtypes) {
        assert_eq!(BlockFormat::from_ggml(dtype), Some(*format));
        let k = cols(*format, 2);
        let w = random_matrix(*format, 3, k, 7);
        let bytes = (*w.data).as_ref();
        let q = QTensor::new(
            candle_core::quantized::QStorage::from_data(std::borrow::Cow::Borrowed(bytes), &candle_core::Device::Cpu, dtype).unwrap(),
            (3, k),
        )
        .unwrap();
        let want = q.dequantize(&candle_core::Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        for r in 0..3 {
            assert_eq!(w.dequantize_row(r), want[r], "{format:?} row {r}");
        }
    }
}

#[test]
fn quantized_products_are_close_to_the_exact_product() {
    // The activations' 8-bit rounding costs at most ~0.4% of Σ|w·x| per block.
    for format in FORMATS {
        let (n, k, m) = (9, cols(format, 3), 5);
        let w = random_matrix(format, n, k, 11);
        let x = random_acts(m, k);
        let mut y = vec![0f32; m * n];
        w.matmul(&x, m, &mut y);
        for r in 0..n {
            let row = w.dequantize_row(r);
            for c in 0..m {
                let xs = &x[c * k..][..k];
                let exact: f32 = row.iter().zip(xs).map(|(a, b)| a * b).sum();
                let scale: f32 = row.iter().zip(xs).map(|(a, b)| (a * b).abs()).sum();
                assert!((y[c * n + r] - exact).abs() <= 0.01 * scale, "{format:?} ({r},{c}): {} vs {exact}", y[c * n + r]);
            }
        }
    }
}

/// The vector kernels this CPU runs: the best one and every lesser one.
#[cfg(target_arch = "x86_64")]
fn kernels_here() -> Vec<Kernel> {
    match BlockMatrix::kernel() {
        Some(Kernel::Avx512Vnni) => vec![Kernel::Avx512Vnni, Kernel::Avx2],
        Some(Kernel::Avx2) => vec![Kernel::Avx2],
        None => vec![],
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn vector_kernels_match_the_portable_arithmetic() {
    // Same integer products and scales; only the float summation order may differ. Sizes
    // cover whole tiles, partial ones (1 to 7 activation rows left, fewer weight rows than
    // a tile's lanes) and several tiles; the extreme matrices have every value at its
    // format's largest unsigned value (0xFF) or Q8_0's −128 and 127, against activations at
    // ±127, where the AVX2 kernel's 16-bit pair sums are closest to saturating. Where more
    // than one kernel runs, they must agree to the bit.
    let kernels = kernels_here();
    if kernels.is_empty() {
        // Then the models never use these kernels here (weights.rs keeps candle's), so there
        // is nothing in use to test; say so rather than pass quietly.
        eprintln!("NOT RUN on this CPU: no AVX2/FMA/F16C, so the block kernels are not used here");
        return;
    }
    let alternating = |m: usize, k: usize| (0..m * k).map(|i| if (i / 3) % 2 == 0 { 5.0 } else { -5.0 }).collect::<Vec<f32>>();
    for format in FORMATS {
        let cases = [(4, 1, 4, None), (70, 18, 9, None), (37, 5, 1, None), (37, 5, 2, None), (70, 18, 7, None), (21, 8, 5, Some(0xFF)), (21, 8, 5, Some(0x00)), (21, 8, 5, Some(0x7F))];
        for (n, blocks, m, byte) in cases {
            let k = cols(format, blocks);
            let w = matrix(format, n, k, 3, byte);
            let x = if byte.is_some() { alternating(m, k) } else { random_acts(m, k) };
            let acts = QuantizedRows::new(&x, m, k, format);
            let mut reference = vec![0f32; m * n];
            w.matmul_portable(&acts, &mut reference);
            // The sums' rounding is relative to the terms summed, not to the result: Q4_K's
            // minimum terms cancel most of its products (a result 100× smaller than its terms).
            let rows: Vec<Vec<f32>> = (0..n).map(|r| w.dequantize_row(r)).collect();
            let mut first: Option<Vec<f32>> = None;
            for &kernel in &kernels {
                let mut fast = vec![0f32; m * n];
                x86::matmul(kernel, &w, &acts, &mut fast);
                let case = format!("{kernel:?} {format:?} {n}x{k}, m={m}, bytes {byte:?}");
                for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
                    let (c, r) = (i / n, i % n);
                    let terms: f32 = rows[r].iter().zip(&x[c * k..][..k]).map(|(w, x)| (w * x).abs()).sum();
                    assert!((a - b).abs() <= 1e-6 * (1.0 + terms), "{case}, at {i}: {a} vs {b} (terms {terms})");
                }
                match &first {
                    None => first = Some(fast),
                    Some(other) => assert!(other.iter().zip(&fast).all(|(a, b)| a.to_bits() == b.to_bits()), "{case}: differs from {:?}", kernels[0]),
                }
            }
        }
    }
}

#[test]
fn activations_round_like_ggml() {
    // 127/max scaling, ties to even, f16 scale; Q8_1's sum scaled by the unrounded d.
    let mut x = vec![0f32; 32];
    x[0] = 127.0; // the max: scale 1
    x[1] = 0.5; // → 0 (even)
    x[2] = 1.5; // → 2
    x[3] = -1.5; // → −2
    x[4] = 2.5; // → 2
    x[5] = 0.1;
    let rows = QuantizedRows::new(&x, 1, 32, BlockFormat::Q4_1);
    assert_eq!(&rows.q[..6], &[127, 0, 2, -2, 2, 0]);
    assert_eq!(rows.d[0], 1.0);
    assert_eq!(rows.s[0], 129.0);
    assert_eq!(QuantizedRows::new(&x, 1, 32, BlockFormat::Q8_0).neg_offset_sum[0], -128 * 129);
    // A scale f16 cannot hold exactly is stored rounded, as ggml stores it.
    let y: Vec<f32> = x.iter().map(|v| v / 300.0).collect();
    let rows = QuantizedRows::new(&y, 1, 32, BlockFormat::Q8_0);
    assert_eq!(rows.d[0], f16::from_f32(127.0 / 300.0 / 127.0).to_f32());
}

#[test]
#[cfg(target_arch = "x86_64")]
fn vector_quantization_of_activations_is_the_portable_one() {
    if !x86::avx512() {
        eprintln!("NOT RUN on this CPU: no AVX-512, so the activations' vector quantization is not used here");
        return;
    }
    // Random blocks, an all-zero one, ties (x.5 after scaling), a max repeated with both signs.
    let mut blocks: Vec<Vec<f32>> = (0..64).map(|s| random_acts(1, 256).iter().map(|v| v * (1.0 + s as f32)).rev().collect()).collect();
    blocks.push(vec![0.0; 256]);
    let mut ties = vec![0.5f32; 256];
    ties[7] = -127.0;
    ties[9] = 127.0;
    (0..256).step_by(3).for_each(|i| ties[i] = 1.5 + i as f32 % 5.0);
    blocks.push(ties);
    for (n, x) in blocks.iter().enumerate() {
        let (mut fast, mut slow) = (vec![0i8; 256], vec![0i8; 256]);
        let (d_fast, d_slow) = unsafe { (x86::quantize_q8_k(x, &mut fast), quantize_q8_k_portable(x, &mut slow)) };
        assert_eq!((d_fast.to_bits(), &fast), (d_slow.to_bits(), &slow), "Q8_K block {n}");
        for b in 0..8 {
            let (xs, f, s) = (&x[32 * b..][..32], &mut fast[32 * b..][..32], &mut slow[32 * b..][..32]);
            let (fast_ds, slow_ds) = unsafe { (x86::quantize_q8(xs, f), quantize_q8_portable(xs, s)) };
            assert_eq!((fast_ds.0.to_bits(), fast_ds.1, &*f), (slow_ds.0.to_bits(), slow_ds.1, &*s), "Q8_0 block {n}/{b}");
        }
    }
}

#[test]
fn k_quant_activations_round_like_ggml() {
    // quantize_row_q8_K_ref: iscale = −127/max with max the value of largest magnitude (its
    // sign kept), ties to even, the f32 scale 1/iscale kept as is; sums per 16 values.
    let mut x = vec![0f32; 256];
    x[0] = -127.0; // the max: iscale 1
    x[1] = 0.5; // → 0 (even)
    x[2] = 1.5; // → 2
    x[3] = -1.5; // → −2
    x[4] = 2.5; // → 2
    x[20] = 3.0;
    let rows = QuantizedRows::new(&x, 1, 256, BlockFormat::Q6K);
    assert_eq!(&rows.q[..6], &[-127, 0, 2, -2, 2, 0]);
    assert_eq!(rows.d, vec![1.0; 8], "one scale for the 256 values");
    assert_eq!(rows.s[0], -125.0 + 3.0);
    assert_eq!(&rows.neg_offset_sum[..3], &[-32 * -125, -32 * 3, 0], "offset sums per 16 values");
    // A positive max flips the signs (iscale −1), as ggml's does.
    let flipped: Vec<f32> = x.iter().map(|v| -v).collect();
    let rows = QuantizedRows::new(&flipped, 1, 256, BlockFormat::Q4K);
    assert_eq!(&rows.q[..6], &[-127, 0, 2, -2, 2, 0]);
    assert_eq!(rows.d[0], -1.0);
    assert!(!rows.serve(BlockFormat::Q6K) && !rows.serve(BlockFormat::Q4_1) && rows.serve(BlockFormat::Q4K));
    // A scale that is no power of two stays f32 (Q8_K does not round it to f16).
    let y: Vec<f32> = x.iter().map(|v| v / 300.0).collect();
    let rows = QuantizedRows::new(&y, 1, 256, BlockFormat::Q4K);
    assert_eq!(rows.d[0], 1.0 / (-127.0 / (-127.0 / 300.0)));
}

#[test]
fn rejects_sizes_that_do_not_fit() {
    assert!(BlockMatrix::new(BlockFormat::Q4K, 2, 128, vec![0; 144]).is_none());
    assert!(BlockMatrix::new(BlockFormat::Q6K, 1, 256, vec![0; 210]).is_some());
    assert!(BlockMatrix::new(BlockFormat::Q4_1, 2, 48, vec![0; 60]).is_none());
    assert!(BlockMatrix::new(BlockFormat::Q4_1, 2, 64, vec![0; 79]).is_none());
}
