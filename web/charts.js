// Canvas charts without a chart library: line charts, the allocation picture, a heat map.

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

function frame(canvas) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = '11px sans-serif';
  return { ctx, l: 52, r: canvas.width - 10, t: 8, b: canvas.height - 30 };
}

/** About `n` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten). */
export function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

const fmt = (v) => (Math.abs(v) >= 1e6 ? `${+(v / 1e6).toPrecision(3)}M` : Math.abs(v) >= 1000 ? `${+(v / 1000).toPrecision(3)}k` : `${+v.toPrecision(3)}`);

/** Axes with round ticks and light grid lines; `ylabel` is written up the left edge. */
function axes(f, x0, x1, y0, y1, ylabel = '') {
  const { ctx, l, r, t, b } = f;
  const sx = (x) => l + ((x - x0) / (x1 - x0 || 1)) * (r - l);
  const sy = (y) => b - ((y - y0) / (y1 - y0 || 1)) * (b - t);
  ctx.strokeStyle = '#e3e3e3'; ctx.fillStyle = '#444';
  ctx.textAlign = 'right';
  for (const v of ticks(y0, y1, 4)) {
    ctx.beginPath(); ctx.moveTo(l, sy(v)); ctx.lineTo(r, sy(v)); ctx.stroke();
    ctx.fillText(fmt(v), l - 3, sy(v) + 4);
  }
  ctx.textAlign = 'center';
  for (const v of ticks(x0, x1, 5)) ctx.fillText(fmt(v), sx(v), b + 12);
  ctx.strokeStyle = '#888';
  ctx.beginPath(); ctx.moveTo(l, t); ctx.lineTo(l, b); ctx.lineTo(r, b); ctx.stroke();
  if (ylabel) {
    ctx.save(); ctx.translate(10, (t + b) / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center'; ctx.fillText(ylabel, 0, 0); ctx.restore();
  }
  return { sx, sy };
}

/** series: [{label, points: [[x, y]], color?, dots?}] */
export function lineChart(canvas, series, { xlabel = '', ylabel = '', x0 = 0, y0, y1 } = {}) {
  const f = frame(canvas);
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]); const ys = pts.map((p) => p[1]).filter(Number.isFinite);
  const lo = y0 ?? Math.min(...ys); const hi = y1 ?? Math.max(...ys);
  const xmax = Math.max(...xs);
  const { sx, sy } = axes(f, x0, xmax > x0 ? xmax : x0 + 1, lo, hi === lo ? lo + 1 : hi, ylabel);
  series.forEach((s, i) => {
    const c = s.color || COLORS[i % COLORS.length];
    f.ctx.strokeStyle = c; f.ctx.fillStyle = c;
    f.ctx.beginPath();
    s.points.forEach(([x, y], j) => (j ? f.ctx.lineTo(sx(x), sy(y)) : f.ctx.moveTo(sx(x), sy(y))));
    f.ctx.stroke();
    if (s.dots) s.points.forEach(([x, y]) => f.ctx.fillRect(sx(x) - 2, sy(y) - 2, 4, 4));
    f.ctx.textAlign = 'left'; f.ctx.fillText(s.label, f.l + 6 + i * 110, f.t + 10);
  });
  f.ctx.fillStyle = '#444'; f.ctx.textAlign = 'center';
  f.ctx.fillText(xlabel, (f.l + f.r) / 2, f.b + 26);
}

/** The FLOPS picture: each image's query count (bar) against its clean loss (x). */
export function allocationChart(canvas, allocation, losses, uniform) {
  const f = frame(canvas);
  if (!allocation || !allocation.length) return;
  const maxN = Math.max(...allocation, uniform);
  const lmax = Math.max(...losses, 1e-6);
  const { sx, sy } = axes(f, 0, lmax, 0, maxN, 'queries');
  f.ctx.fillStyle = 'rgba(31,119,180,0.75)';
  allocation.forEach((n, i) => {
    const x = sx(losses[i]);
    f.ctx.fillRect(x - 2, sy(n), 4, sy(0) - sy(n));
  });
  f.ctx.strokeStyle = '#d62728'; f.ctx.setLineDash([4, 3]);
  f.ctx.beginPath(); f.ctx.moveTo(sx(0), sy(uniform)); f.ctx.lineTo(sx(lmax), sy(uniform)); f.ctx.stroke();
  f.ctx.setLineDash([]);
  f.ctx.fillStyle = '#444'; f.ctx.textAlign = 'center';
  f.ctx.fillText('clean loss of the image → (bar height: its queries)', (f.l + f.r) / 2, f.b + 14);
}

/** confusion[true][pred] as a heat map with counts. */
export function confusionChart(canvas, confusion, labels) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const n = confusion.length; if (!n) return;
  const pad = 60; const cell = (Math.min(canvas.width, canvas.height) - pad) / n;
  ctx.font = '10px sans-serif';
  confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((v, j) => {
      const a = v / total;
      ctx.fillStyle = i === j ? `rgba(44,160,44,${a})` : `rgba(214,39,40,${a})`;
      ctx.fillRect(pad + j * cell, pad + i * cell, cell - 1, cell - 1);
      if (cell > 18) { ctx.fillStyle = '#000'; ctx.textAlign = 'center'; ctx.fillText(v, pad + (j + 0.5) * cell, pad + (i + 0.6) * cell); }
    });
    ctx.fillStyle = '#333'; ctx.textAlign = 'right';
    ctx.fillText((labels[i] || String(i)).slice(0, 9), pad - 3, pad + (i + 0.6) * cell);
    ctx.save(); ctx.translate(pad + (i + 0.6) * cell, pad - 3); ctx.rotate(-Math.PI / 3);
    ctx.textAlign = 'left'; ctx.fillText((labels[i] || String(i)).slice(0, 9), 0, 0); ctx.restore();
  });
}

/** Paints an ImageData-like {width, height, data} into a new canvas. */
export function imageCanvas(img) {
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  c.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(img.data), img.width, img.height), 0, 0);
  return c;
}
