//! [`GpuContext`]: the adapter, device, queue, limits and the compiled-pipeline cache.
//! Model weights and per-forward buffers live outside it ([`super::GpuModel`], [`super::GpuTensor`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{GpuError, Result};
use super::shaders::Kernel;

/// How to pick the adapter.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Prefer a software adapter (lavapipe, SwiftShader).
    pub force_fallback_adapter: bool,
    /// Backends from `WGPU_BACKEND` when set (natively), else the primary ones (no GL).
    pub backends_from_env: bool,
}

/// A compiled pipeline's identity: kernel family, entry point and override constants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    pub entry: &'static str,
    /// `(name, value)` pairs, sorted by name (booleans as 0/1).
    pub constants: Vec<(&'static str, u32)>,
}

impl PipelineKey {
    pub fn new(kernel: Kernel, entry: &'static str, constants: &[(&'static str, bool)]) -> Self {
        let mut c: Vec<(&'static str, u32)> = constants.iter().map(|&(n, v)| (n, v as u32)).collect();
        c.sort();
        Self {
            kernel,
            entry,
            constants: c,
        }
    }
}

/// The adapter's identity, for logs and benchmarks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

/// One device and its caches. Cheap to share by reference; all methods take `&self`.
pub struct GpuContext {
    pub adapter_info: wgpu::AdapterInfo,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    modules: Mutex<HashMap<Kernel, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Why the device was lost (set by its lost callback), once it is.
    lost: Arc<Mutex<Option<String>>>,
    /// The last error no error scope caught (wgpu's default handler would panic).
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Bytes of the [`super::GpuTensor`]s alive on the device, and their peak.
    pub(crate) tensor_bytes: Arc<TensorBytes>,
}

/// Live and peak bytes of device tensors (counted by [`super::GpuTensor`]'s allocation guard).
#[derive(Debug, Default)]
pub struct TensorBytes {
    live: AtomicU64,
    peak: AtomicU64,
}

impl TensorBytes {
    pub(crate) fn add(&self, bytes: u64) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// What the device holds in tensors (weights, activations, features, optimiser state): bytes
/// alive now and the most alive at once since the context was made. Uniform and staging
/// buffers, short-lived and small, are not counted.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryReport {
    pub live_bytes: u64,
    pub peak_bytes: u64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter_info.name)
            .finish_non_exhaustive()
    }
}

impl GpuContext {
    /// Requests an adapter and a device with the WebGPU default limits (raised only to what
    /// the adapter offers for storage-binding and buffer sizes, which bound the batch size).
    pub async fn new(opts: &GpuOptions) -> Result<Self> {
        let mut desc = if opts.backends_from_env {
            wgpu::InstanceDescriptor::new_without_display_handle_from_env()
        } else {
            wgpu::InstanceDescriptor::new_without_display_handle()
        };
        // Vulkan/Metal/DX12/WebGPU; GL only on request (its first compiles take seconds).
        let env = opts.backends_from_env.then(wgpu::Backends::from_env).flatten();
        desc.backends = env.unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: opts.force_fallback_adapter,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| GpuError::NoAdapter { reason: e.to_string() })?;
        let info = adapter.get_info();
        let offered = adapter.limits();
        let mut limits = wgpu::Limits::default();
        // Larger bindings only let more rows share one dispatch; take them when offered.
        limits.max_storage_buffer_binding_size = limits
            .max_storage_buffer_binding_size
            .max(offered.max_storage_buffer_binding_size.min(1 << 30));
        limits.max_buffer_size = limits.max_buffer_size.max(offered.max_buffer_size.min(1 << 30));
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("flops-web"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let lost = Arc::new(Mutex::new(None));
        let on_lost = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let kind = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed",
                _ => "lost",
            };
            *lock(&on_lost) = Some(if message.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}: {message}")
            });
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let on_error = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            *lock(&on_error) = Some(e.to_string());
        }));
        Ok(Self {
            adapter_info: info,
            device,
            queue,
            limits,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            lost,
            uncaptured,
            tensor_bytes: Arc::default(),
        })
    }

    /// [`GpuContext::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::new(opts))
    }

    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary {
            name: self.adapter_info.name.clone(),
            backend: format!("{:?}", self.adapter_info.backend),
            device_type: format!("{:?}", self.adapter_info.device_type),
            driver: format!("{} {}", self.adapter_info.driver, self.adapter_info.driver_info),
        }
    }

    /// The largest buffer one storage binding may cover, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// The compiled pipeline for `key`, compiling (and caching) it on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = lock(&self.pipelines).get(key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = lock(&self.modules);
            modules
                .entry(key.kernel)
                .or_insert_with(|| {
                    self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(key.kernel.file_name()),
                        source: wgpu::ShaderSource::Wgsl(key.kernel.source().into()),
                    })
                })
                .clone()
        };
        let constants: Vec<(&str, f64)> = key.constants.iter().map(|&(n, v)| (n, v as f64)).collect();
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.entry),
            layout: None,
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = block_or_ready(scope.pop()) {
            return Err(GpuError::Validation {
                message: format!("{}::{}: {e}", key.kernel.file_name(), key.entry),
            });
        }
        let pipeline = Arc::new(pipeline);
        lock(&self.pipelines).insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }

    /// Why the device is gone, once it is (destroyed, a driver reset, a browser that took it
    /// back). Every later call on it fails; work must move elsewhere.
    pub fn lost(&self) -> Option<String> {
        // Natively the lost callback runs from a poll; in the browser from the event loop.
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
        lock(&self.lost).clone()
    }

    /// The last error outside any error scope, taken (reported once).
    pub fn take_uncaptured_error(&self) -> Option<String> {
        lock(&self.uncaptured).take()
    }

    /// Destroys the device, as a driver reset or the browser reclaiming the GPU would: the
    /// test hook for device loss.
    pub fn destroy_for_testing(&self) {
        self.device.destroy();
    }

    /// Tensor bytes on the device now and at their peak.
    pub fn memory(&self) -> MemoryReport {
        MemoryReport {
            live_bytes: self.tensor_bytes.live.load(Ordering::Relaxed),
            peak_bytes: self.tensor_bytes.peak.load(Ordering::Relaxed),
        }
    }

    /// Number of compiled pipelines (for tests of the cache).
    pub fn cached_pipelines(&self) -> usize {
        lock(&self.pipelines).len()
    }
}

/// A poisoned cache only means another thread panicked mid-insert; the map is still valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Error scopes resolve immediately natively; on the web the result arrives later, so this
/// returns `None` there and the enclosing scope of [`crate::gpu::GpuForward::submit`] reports
/// the error when the results are read.
pub(crate) fn block_or_ready<F: std::future::Future<Output = Option<wgpu::Error>>>(f: F) -> Option<wgpu::Error> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        None
    }
}
