// A tiny static server for the demo and the e2e test: 127.0.0.1 only (a secure context for
// WebGPU), `.wasm` as application/wasm, `/wasm/*` from the wasm-bindgen output directory,
// `/data/animal-shape/*` from assets/animal-shape/, `/models/default/*` from assets/default/.
//   node web/serve.mjs [port] [wasm dir] [--mount /prefix/=dir ...]
// (port 0: any free port; prints the URL; `--mount` serves more folders, e.g. `make bench`'s page,
// models and ONNX Runtime Web)
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, dirname, relative, isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const mounts = [];
for (let i = args.indexOf('--mount'); i >= 0; i = args.indexOf('--mount')) {
  const spec = String(args[i + 1] ?? '');
  const [prefix, dir] = [spec.slice(0, spec.indexOf('=')), spec.slice(spec.indexOf('=') + 1)];
  if (!prefix?.startsWith('/') || !prefix.endsWith('/') || !dir) throw new Error(`--mount wants /prefix/=dir, got ${args[i + 1]}`);
  mounts.push([prefix, resolve(dir)]);
  args.splice(i, 2);
}
const port = Number(args[0] ?? 8080);
const wasmDir = resolve(args[1] ?? join(here, '..', 'target', 'web', 'wasm'));
// The Animal-Shape files the worker fetches on "Load Animal-Shape" (not compiled into the wasm).
const dataDir = resolve(join(here, '..', 'assets', 'animal-shape'));
// The default model the worker fetches when the page gives none.
const modelDir = resolve(join(here, '..', 'assets', 'default'));
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.wasm': 'application/wasm', '.json': 'application/json', '.png': 'image/png',
  '.svg': 'image/svg+xml', '.ts': 'text/plain; charset=utf-8', '.onnx': 'application/octet-stream',
};

const server = createServer(async (req, res) => {
  try {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const mount = mounts.find(([prefix]) => path.startsWith(prefix));
    const [root, rel] = mount ? [mount[1], path.slice(mount[0].length)]
      : path.startsWith('/wasm/') ? [wasmDir, path.slice(6)]
      : path.startsWith('/data/animal-shape/') ? [dataDir, path.slice(19)]
      : path.startsWith('/models/default/') ? [modelDir, path.slice(16)]
      : [here, path === '/' ? 'index.html' : path.slice(1)];
    const file = normalize(join(root, rel));
    if (relative(root, file).startsWith('..') || isAbsolute(relative(root, file))) throw Object.assign(new Error('outside root'), { code: 'ENOENT' });
    if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
    res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(await readFile(file));
  } catch (e) {
    res.writeHead(e.code === 'ENOENT' ? 404 : 500, { 'content-type': 'text/plain' });
    res.end(e.code === 'ENOENT' ? 'not found' : String(e));
  }
});
server.listen(port, '127.0.0.1', () => {
  console.log(`flops-web: http://127.0.0.1:${server.address().port}/`);
});
