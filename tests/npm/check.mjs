// Builds tests/npm/app (a minimal Vite 7 app importing `flops-web`) against the package in pkg/
// (copied into node_modules/flops-web, as `npm install ../../pkg` would) and checks that the
// bundle contains the wasm, byte for byte, and the worker that loads it.
import { build } from 'vite';
import { cpSync, rmSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const pkg = join(root, 'pkg');
const dep = join(here, 'node_modules', 'flops-web');
const dist = join(root, 'target', 'npm-test', 'dist');
const t0 = Date.now();
rmSync(dep, { recursive: true, force: true });
cpSync(pkg, dep, { recursive: true });
rmSync(dist, { recursive: true, force: true });
await build({
  root: join(here, 'app'),
  logLevel: 'warn',
  build: { outDir: dist, emptyOutDir: true, target: 'es2022' },
  worker: { format: 'es' },
});
const files = [];
const walk = (d) => readdirSync(d).forEach((f) => { const p = join(d, f); statSync(p).isDirectory() ? walk(p) : files.push(p); });
walk(dist);
const want = readFileSync(join(pkg, 'wasm', 'flops_web_bg.wasm'));
const wasm = files.filter((f) => f.endsWith('.wasm'));
const fail = (m) => { console.error(`npm test: FAIL: ${m}\nfiles: ${files.map((f) => f.slice(dist.length + 1)).join(', ')}`); process.exit(1); };
if (!wasm.length) fail('no .wasm in the Vite bundle');
const js = files.filter((f) => f.endsWith('.js')).map((f) => [f, readFileSync(f, 'utf8')]);
// Both builds (the worker picks one at run time), byte for byte, each referenced by a script.
let worker;
for (const name of ['flops_web_bg.wasm', 'flops_web_relaxed_bg.wasm']) {
  const bytes = readFileSync(join(pkg, 'wasm', name));
  const bundled = wasm.find((f) => readFileSync(f).equals(bytes));
  if (!bundled) fail(`the bundle lacks pkg/wasm/${name} (or it differs)`);
  const bundledName = bundled.slice(bundled.lastIndexOf('/') + 1);
  worker = js.find(([, s]) => s.includes(bundledName));
  if (!worker) fail(`no bundled script references ${bundledName}`);
}
if (!js.some(([, s]) => /new Worker\(/.test(s))) fail('the bundle never starts the worker');
// The assets the worker fetches (default model, Animal-Shape) are emitted by the bundler.
for (const asset of ['models/default/model.safetensors', 'data/animal-shape/train-images.idx3-ubyte']) {
  const bytes = readFileSync(join(pkg, asset));
  if (!files.some((f) => statSync(f).size === bytes.length && readFileSync(f).equals(bytes))) fail(`the bundle lacks ${asset}`);
}
console.log(`npm test: PASS: Vite bundle has ${wasm.map((f) => f.slice(dist.length + 1)).join(', ')} (${want.length} bytes), referenced by ${worker[0].slice(dist.length + 1)}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
