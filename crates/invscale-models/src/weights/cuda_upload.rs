//! Weights onto the GPU fast: a checkpoint's tensors read from their files by several threads at
//! once straight into page-locked buffers (`pread`, no page faults through the memory map, no
//! intermediate `Vec`), each buffer copied to the device asynchronously while its thread fills its
//! other one. candle's own path (`MmapedSafetensors::load` onto a CUDA device) copies each tensor
//! twice on one thread, the second time from pageable memory: an 8B model's 16 GB took 2.2-2.6 s
//! that way on an H200, 0.85-0.93 s this way (17-19 GB/s: the host's memory, not the bus, is the
//! limit there; registering the mapped pages with the driver instead of reading them was no faster).
//!
//! Also here: the device memory pool is told to keep what it frees (PyTorch's caching allocator
//! does the same), so a pass does not map again the memory the pass before it gave back.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::cudarc::driver::{result, sys, CudaEvent, CudaSlice, CudaStream, DevicePtrMut, PinnedHostSlice};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{op::BackpropOp, CudaStorage, DType, Storage, Tensor};

pub use crate::weights::file_tensors::{FileTensor, safetensors_index};

/// Upload threads at most (`INVSCALE_UPLOAD_THREADS`, default 8).
fn threads_at_most() -> usize {
    std::env::var("INVSCALE_UPLOAD_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(8).max(1)
}

/// Bytes a thread reads and copies at a time.
pub const CHUNK: usize = 32 << 20;

/// The device slices the tensors go to, by dtype (what candle can wrap).
enum Slice {
    Bf16(CudaSlice<half::bf16>),
    F16(CudaSlice<half::f16>),
    F32(CudaSlice<f32>),
}

impl Slice {
    fn alloc(stream: &Arc<CudaStream>, dtype: DType, n: usize) -> candle_core::Result<Slice> {
        // Safety: every byte is written by the copies below before the tensor is used.
        Ok(unsafe {
            match dtype {
                DType::BF16 => Slice::Bf16(stream.alloc(n).w()?),
                DType::F16 => Slice::F16(stream.alloc(n).w()?),
                DType::F32 => Slice::F32(stream.alloc(n).w()?),
                other => candle_core::bail!("no direct upload for {other:?} tensors"),
            }
        })
    }

    fn ptr(&mut self, stream: &CudaStream) -> sys::CUdeviceptr {
        match self {
            Slice::Bf16(s) => s.device_ptr_mut(stream).0,
            Slice::F16(s) => s.device_ptr_mut(stream).0,
            Slice::F32(s) => s.device_ptr_mut(stream).0,
        }
    }

    fn into_tensor(self, dev: &CudaDevice, shape: &[usize]) -> Tensor {
        let storage = match self {
            Slice::Bf16(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
            Slice::F16(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
            Slice::F32(s) => CudaStorage::wrap_cuda_slice(s, dev.clone()),
        };
        Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
    }
}

/// A range of one file that one thread moves at a time (`CHUNK`-aligned in the file: one read
/// serves every tensor, or piece of one, inside it).
struct Unit {
    file: usize,
    start: u64,
    end: u64,
    /// (tensor, byte offset in the tensor, byte offset in the unit, bytes)
    pieces: Vec<(usize, usize, usize, usize)>,
}

fn units(tensors: &[FileTensor], chunk: usize) -> Vec<Unit> {
    let chunk = chunk as u64;
    let mut units: Vec<Unit> = Vec::new();
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| (tensors[i].file, tensors[i].offset));
    for i in order {
        let t = &tensors[i];
        let (mut at, end) = (t.offset, t.offset + t.bytes() as u64);
        while at < end {
            let start = at / chunk * chunk;
            let stop = (start + chunk).min(end);
            match units.last_mut() {
                Some(u) if u.file == t.file && u.start == start => u.end = u.end.max(stop),
                _ => units.push(Unit { file: t.file, start, end: stop, pieces: vec![] }),
            }
            let u = units.last_mut().expect("just pushed");
            u.pieces.push((i, (at - t.offset) as usize, (at - start) as usize, (stop - at) as usize));
            at = stop;
        }
    }
    units
}

/// Reads `tensors` from `files` onto `dev`, a `chunk`-sized range of a file at a time per
/// thread; tensors come back in the order given. An error names the file.
pub fn upload(dev: &CudaDevice, files: &[PathBuf], tensors: &[FileTensor], chunk: usize) -> crate::error::Result<Vec<Tensor>> {
    let stream = dev.cuda_stream();
    let ctx = stream.context().clone();
    let opened: Vec<File> = files.iter().map(|f| File::open(f).map_err(|e| crate::error::ModelError::io(f, e))).collect::<crate::error::Result<_>>()?;
    let mut slices: Vec<Slice> = tensors
        .iter()
        .map(|t| Slice::alloc(&stream, t.dtype, t.shape.iter().product()))
        .collect::<candle_core::Result<_>>()?;
    let ptrs: Vec<sys::CUdeviceptr> = slices.iter_mut().map(|s| s.ptr(&stream)).collect();
    let units = units(tensors, chunk);
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(1, threads_at_most()).min(units.len().max(1));
    let started = std::time::Instant::now();
    // Nanoseconds the threads spent allocating buffers, reading, waiting for copies.
    let spent = [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];
    let add = |i: usize, since: std::time::Instant| spent[i].fetch_add(since.elapsed().as_nanos() as usize, Ordering::Relaxed);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let error: Mutex<Option<crate::error::ModelError>> = Mutex::new(None);
    let copy_pieces = |u: &Unit, host: &[u8]| -> candle_core::Result<CudaEvent> {
        for &(i, in_tensor, in_unit, len) in &u.pieces {
            // Safety: the destination is inside tensor i's allocation; the source stays valid
            // and unchanged until the event recorded after the copies has completed.
            unsafe { result::memcpy_htod_async(ptrs[i] + in_tensor as u64, &host[in_unit..in_unit + len], stream.cu_stream()) }.w()?;
        }
        stream.record_event(None).w()
    };
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let work = || -> crate::error::Result<()> {
                    ctx.bind_to_thread().w()?;
                    let t = std::time::Instant::now();
                    // Two buffers a thread: one is read into while the other's copy runs.
                    // Safety: a buffer is only read by a copy after `read_exact_at` filled it.
                    let mut buffers: Vec<(PinnedHostSlice<u8>, Option<CudaEvent>)> =
                        (0..2).map(|_| unsafe { ctx.alloc_pinned_with_flags::<u8>(chunk, 0) }.map(|b| (b, None))).collect::<Result<_, _>>().w()?;
                    add(0, t);
                    let mut turn = 0;
                    while !failed.load(Ordering::Relaxed) {
                        let Some(u) = units.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        let len = (u.end - u.start) as usize;
                        let (buffer, copied) = &mut buffers[turn % 2];
                        turn += 1;
                        let waited = std::time::Instant::now();
                        if let Some(event) = copied.take() {
                            event.synchronize().w()?;
                        }
                        add(2, waited);
                        let bytes = &mut buffer.as_mut_slice().w()?[..len];
                        let read = std::time::Instant::now();
                        opened[u.file].read_exact_at(bytes, u.start).map_err(|e| crate::error::ModelError::io(&files[u.file], e))?;
                        add(1, read);
                        *copied = Some(copy_pieces(u, bytes)?);
                    }
                    // The buffers' drops wait for their copies.
                    Ok(())
                };
                if let Err(e) = work() {
                    failed.store(true, Ordering::Relaxed);
                    error.lock().unwrap().get_or_insert(e);
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap() {
        return Err(e);
    }
    stream.synchronize().w()?;
    if crate::profile::level() >= 1 {
        let [setup, read, wait] = spent.map(|s| s.into_inner() as f64 / 1e6);
        let bytes: usize = tensors.iter().map(FileTensor::bytes).sum();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "profile: upload: {:.2} GB in {:.0} ms ({:.1} GB/s), {threads} threads; summed over them: buffers {setup:.0} ms, reads {read:.0} ms, waits for copies {wait:.0} ms",
            bytes as f64 / 1e9,
            secs * 1e3,
            bytes as f64 / 1e9 / secs
        );
    }
    Ok(slices.into_iter().zip(tensors).map(|(s, t)| s.into_tensor(dev, &t.shape)).collect())
}

/// The device's default memory pool (where candle's stream-ordered allocations come from).
fn default_pool(dev: &CudaDevice) -> candle_core::Result<sys::CUmemoryPool> {
    let stream = dev.cuda_stream();
    let ctx = stream.context();
    ctx.bind_to_thread().w()?;
    let mut pool = std::mem::MaybeUninit::uninit();
    // Safety: the driver writes the pool handle on success, checked before it is read.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(pool.as_mut_ptr(), ctx.cu_device()).result().w()?;
        Ok(pool.assume_init())
    }
}

/// Keep freed device memory in the pool (release threshold: never), so that each pass reuses what
/// the last one freed instead of mapping it again after the synchronisation that ends it.
pub fn keep_freed_memory(dev: &CudaDevice) -> candle_core::Result<()> {
    let threshold = u64::MAX;
    let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
    // Safety: the attribute takes a u64, read by the driver during the call.
    unsafe { sys::cuMemPoolSetAttribute(default_pool(dev)?, attr, &threshold as *const u64 as *mut std::ffi::c_void).result().w() }
}

/// Device memory the pool holds but no tensor uses: free for the next pass, though the driver
/// does not count it as free.
pub fn pooled_free_memory(dev: &CudaDevice) -> candle_core::Result<usize> {
    let pool = default_pool(dev)?;
    let attr = |a| -> candle_core::Result<u64> {
        let mut v = 0u64;
        // Safety: both attributes are u64s, written by the driver during the call.
        unsafe { sys::cuMemPoolGetAttribute(pool, a, &mut v as *mut u64 as *mut std::ffi::c_void).result().w()? };
        Ok(v)
    };
    let reserved = attr(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?;
    let used = attr(sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?;
    Ok(reserved.saturating_sub(used) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The direct upload gives exactly the bytes candle's own reader gives, for each dtype, for
    /// tensors smaller than a chunk, of several chunks and of one ending mid-chunk, several
    /// sharing a chunk, over two files (a sharded checkpoint), with chunks small enough that
    /// every thread has several.
    #[test]
    fn direct_upload_is_the_files_bytes() {
        let gpu = Device::new_cuda(0).expect("this test needs a CUDA GPU: build the tests with --features cuda and run them on a machine with one");
        let Device::Cuda(dev) = &gpu else { unreachable!() };
        let dir = tempfile::tempdir().unwrap();
        let mut expected = vec![];
        let mut files = vec![];
        for (f, dims) in [[(3usize, 5usize), (257, 129), (1, 1)], [(64, 1000), (7, 3), (999, 17)]].into_iter().enumerate() {
            let mut map = std::collections::HashMap::new();
            for (i, (dtype, shape)) in [DType::BF16, DType::F16, DType::F32].into_iter().zip(dims).enumerate() {
                let t = Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
                map.insert(format!("f{f}.t{i}"), t);
            }
            let path = dir.path().join(format!("shard{f}.safetensors"));
            candle_core::safetensors::save(&map, &path).unwrap();
            expected.extend(map);
            files.push(path);
        }
        let index = safetensors_index(&files).unwrap();
        assert_eq!(index.len(), expected.len());
        let (names, tensors): (Vec<String>, Vec<FileTensor>) = index.into_iter().unzip();
        let got = upload(dev, &files, &tensors, 4096 * 2).unwrap();
        for (name, t) in names.iter().zip(got) {
            let want = expected.iter().find(|(n, _)| n == name).unwrap().1.clone();
            assert_eq!((t.dtype(), t.dims()), (want.dtype(), want.dims()), "{name}");
            let (a, b) = (t.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap(), want.to_dtype(DType::F32).unwrap());
            let same = a.flatten_all().unwrap().to_vec1::<f32>().unwrap() == b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(same, "{name}: the uploaded tensor differs from the file's");
        }
    }

    /// A header whose offsets run past the end of the file is refused with the file's name.
    #[test]
    fn truncated_safetensors_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let t = Tensor::zeros((64, 64), DType::BF16, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&std::collections::HashMap::from([("w".to_string(), t)]), &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
        let err = safetensors_index(&[path.clone()]).unwrap_err().to_string();
        assert!(err.contains("model.safetensors") && err.contains("run past the end"), "{err}");
    }
}
