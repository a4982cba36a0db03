// make bench: flops-web's forward in the browser side by side with ONNX Runtime Web, one headless
// Chromium run (Debian's, WebGPU on SwiftShader), on the models of scripts/bench_web_models.py
// (target/bench/models: HF files for ours, ONNX for ORT, the same weights):
//   - our wasm CPU forward (cpu-fast: matrixmultiply's simd128 GEMM) vs ORT Web's WASM EP, 1 thread
//   - our WGSL forward vs ORT Web's WebGPU EP on the same adapter
//   - cold start: page load to the first prediction, ours (npm API, default model) and ORT's
//   - the wasm's bytes, raw and gzipped
// Prints one JSON object and writes it to target/bench/web.json.
//   node tests/bench/bench.mjs [--repeats 5] [--warmup-ms 3000] [--rounds 3] [--quick]
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { withPage, root, fail } from '../e2e/harness.mjs';

const argv = process.argv.slice(2);
const opt = (k, d) => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : d; };
const repeats = Number(opt('--repeats', 5));
const warmupMs = Number(opt('--warmup-ms', 3000));
const quick = argv.includes('--quick');
// This machine is shared and its speed moves by up to 2x between minutes: every comparison runs
// in `rounds` interleaved rounds, and the ratios use each path's best round (its lowest median),
// with every round's own ratio beside them.
const rounds = Number(opt('--rounds', quick ? 1 : 3));
const models = join(root, 'target', 'bench', 'models');
const ortDist = join(root, 'tests', 'bench', 'node_modules', 'onnxruntime-web', 'dist');
const serverArgs = ['--mount', `/bench/=${join(root, 'tests', 'bench', 'page')}`, '--mount', `/ort/=${ortDist}`,
  '--mount', `/bench-models/=${models}`];

// What each forward run compares: model, batch, our paths, ORT's EPs. SwiftShader runs the
// WebGPU sides at well under 1 GFLOP/s, so ViT-Tiny goes there with one image.
// The default model's CPU forward takes milliseconds: it gets more repeats.
const runs = [
  { model: 'default', rows: 4, paths: 'cpu-fast', ort: 'wasm', repeats: repeats * 6, inner: 10 },
  { model: 'default', rows: 4, paths: 'wgsl', ort: 'webgpu', warmupMs: 0 },
  { model: 'vit-tiny', rows: 4, paths: 'cpu-fast', ort: 'wasm' },
  // The plain-simd128 build (browsers without relaxed SIMD), for comparison.
  { model: 'vit-tiny', rows: 4, paths: 'cpu-fast', ort: '', build: 'simd128' },
  ...(quick ? [] : [{ model: 'vit-tiny', rows: 1, paths: 'wgsl', ort: 'webgpu', repeats: 2, warmupMs: 0 }]),
];

async function result(page, url, log, timeoutMs) {
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => window.benchResult, null, { timeout: timeoutMs, polling: 200 });
  const r = await page.evaluate(() => window.benchResult);
  if (r.error) fail(`${url}: ${r.error}`);
  log(`${url}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

const out = { browser: null, adapter: null, repeats, warmupMs, rounds, forward: [], ratios: {}, coldStart: [], wasm: {} };
await withPage('bench', async ({ url, page, context, log }) => {
  out.browser = context.browser()?.version() ?? (await page.evaluate(() => navigator.userAgent));
  const perRun = runs.map(() => []); // per run: each round's entries
  for (let round = 0; round < rounds; round++) {
    for (const [i, r] of runs.entries()) {
      // The GPU sides run seconds per forward on SwiftShader: one warm-up run (no tiering there).
      const q = new URLSearchParams({ mode: 'forward', model: r.model, rows: r.rows, repeats: r.repeats ?? repeats,
        inner: r.inner ?? 1, warmupMs: r.warmupMs ?? warmupMs, paths: r.paths, ort: r.ort, ...(r.build ? { build: r.build } : {}) });
      const res = await result(page, `${url}bench/index.html?${q}`, log, 20 * 60_000);
      const ours = res.entries.find((e) => e.gflopPerS);
      const flop = ours.gflopPerS * ours.ms * 1e6; // the whole batch, counted as in `flops bench speed`
      const entries = res.entries.map((e) => ({ path: e.path, model: r.model, threads: 1, rows: r.rows, round, ms: e.ms,
        gflop_per_s: flop / e.ms / 1e6, ...(e.path.startsWith('cpu') ? { wasm_simd: res.wasmSimd } : {}),
        samples_ms: e.samplesMs, logits_max_abs_diff_vs_ort: e.logitsMaxAbsDiffVsOrt }));
      for (const e of res.entries) out.adapter ??= e.adapter ?? null;
      out.forward.push(...entries);
      perRun[i].push(entries);
      out.ortWeb = res.ortVersion ?? out.ortWeb ?? null;
    }
  }
  // Ratios (theirs' ms / ours', same page, model, batch and pixels): from each side's best round,
  // and in every round.
  for (const [i, r] of runs.entries()) {
    for (const [ours, theirs, name] of [['cpu-fast', 'ort-web-wasm', 'cpu-fast/ort-web-wasm (1 thread)'], ['wgsl', 'ort-web-webgpu', 'wgsl/ort-web-webgpu']]) {
      const ms = (path) => perRun[i].map((entries) => entries.find((e) => e.path === path)?.ms);
      const [a, b] = [ms(ours), ms(theirs)];
      if (a.some((v) => v == null) || b.some((v) => v == null)) continue;
      out.ratios[`${r.model} x${r.rows}: ${name}`] = { best: Math.min(...b) / Math.min(...a), rounds: a.map((v, k) => b[k] / v) };
    }
  }
  // Cold starts, each in a fresh page (the server sends no-store: nothing is cached).
  for (let round = 0; round < rounds; round++) {
    for (const [mode, extra] of [['cold-ours', { device: 'auto' }], ['cold-ours', { device: 'cpu' }], ['cold-ort', { ep: 'wasm' }]]) {
      const fresh = await context.newPage();
      try {
        const q = new URLSearchParams({ mode, model: 'default', ...extra });
        out.coldStart.push({ round, requested: extra.device ?? null, ...(await result(fresh, `${url}bench/index.html?${q}`, log, 5 * 60_000)) });
      } finally { await fresh.close(); }
    }
  }
  // Raw and gzipped bytes of the modules the pages fetch: ours (the worker loads one of the two)
  // and ORT Web's for its WASM EP (ort.wasm) and its WebGPU EP (ort.webgpu: asyncify).
  const size = (file) => { const b = readFileSync(file); return { bytes: b.length, gzipBytes: gzipSync(b, { level: 9 }).length }; };
  const ours = join(root, 'target', 'web', 'wasm');
  out.wasm = { simd128: size(join(ours, 'flops_web_bg.wasm')), relaxedSimd: size(join(ours, 'flops_web_relaxed_bg.wasm')),
    ortWebWasmEp: size(join(ortDist, 'ort-wasm-simd-threaded.wasm')), ortWebWebgpuEp: size(join(ortDist, 'ort-wasm-simd-threaded.asyncify.wasm')) };
}, { serverArgs });

mkdirSync(join(root, 'target', 'bench'), { recursive: true });
writeFileSync(join(root, 'target', 'bench', 'web.json'), JSON.stringify(out, null, 2));
console.log(JSON.stringify(out, null, 2));
