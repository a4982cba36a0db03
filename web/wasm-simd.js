// Which build of the core this browser can run (one place for web/worker.js and make bench's
// page): 'relaxed-simd' where `WebAssembly.validate` accepts a module using f32x4.relaxed_madd
// (the GEMM kernel's fused multiply-add; Chrome 114+), else 'simd128'.
const RELAXED_SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 28, 1, 26, 0,
  67, 0, 0, 128, 63, 253, 19, 67, 0, 0, 128, 63, 253, 19, 67, 0, 0, 128, 63, 253, 19, 253, 133, 2, 11]);

export const wasmBuild = (() => {
  try { return WebAssembly.validate(RELAXED_SIMD_PROBE) ? 'relaxed-simd' : 'simd128'; } catch (_) { return 'simd128'; }
})();
