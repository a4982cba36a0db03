//! The CPU backend's likelihood-ratio gradient: every query's recorded inputs and noise
//! summed into one flat gradient, with the rows of an image that share an input stacked into
//! one product per site.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::CpuBackend;
use crate::learn::backend::StepPlan;
use crate::learn::LearnError;
use crate::model::nn::{sgemm, Kernels, GEMM_MIN_ROWS};
use crate::model::{LinearSite, NormSite, ParamTable};

/// Reused `f32` buffers. Natively, a fresh buffer of more than 128 KiB comes from `mmap` and
/// page-faults on first touch: that was about 40% of the last:1 gradient of the default model
/// (its stacked products are 800 x 64), so those buffers live across steps.
#[derive(Default)]
pub(super) struct Scratch(RefCell<Vec<Vec<f32>>>);

impl Scratch {
    /// An empty buffer (with the capacity of an earlier one).
    fn take(&self) -> Vec<f32> {
        let mut v = self.0.borrow_mut().pop().unwrap_or_default();
        v.clear();
        v
    }

    fn zeros(&self, len: usize) -> Vec<f32> {
        let mut v = self.take();
        v.resize(len, 0.0);
        v
    }

    fn give(&self, v: Vec<f32>) {
        self.0.borrow_mut().push(v);
    }
}

impl CpuBackend {
    /// LR: `G_W += sum_r c_r sum_t eps_rt u_rt^T`, `G_b += sum_r c_r sum_t eps_rt` for every
    /// perturbed site, and for every LayerNorm feeding perturbed sites
    /// `d_y = sum_sites W^T (c_r eps_r)`, `G_gamma += sum_rt d_y x_hat`, `G_beta += sum_rt d_y`:
    /// the reference in a pass of its own per LayerNorm, the fast path from each consumer's
    /// product over x_hat ([`accumulate_through_norm`], `d_y` never formed).
    /// `slot(t)`: the offset of tensor `t` in `grad`, if tuned.
    pub(super) fn lr_gradient(
        &self,
        plan: &StepPlan,
        coefficients: &[f32],
        slot: &dyn Fn(u32) -> Option<usize>,
        grad: &mut [f64],
    ) -> Result<(), LearnError> {
        let same_forward = self
            .recorded_for
            .as_ref()
            .is_some_and(|(seed, step, q)| *seed == plan.seed && *step == plan.step && *q == plan.queries);
        if !same_forward || self.recorded.len() != plan.queries.len() || coefficients.len() != plan.queries.len() {
            return Err(LearnError::Config {
                message: format!(
                    "gradient of step {} ({} queries, {} coefficients) without that step's query forward",
                    plan.step,
                    plan.queries.len(),
                    coefficients.len()
                ),
            });
        }
        let kernels = self.kernels();
        let params = self.net.params();
        let ids = &self.ids;
        let points = plan.queries.iter().map(|q| q.point + 1).max().unwrap_or(0);
        let mut point_rows = vec![Vec::new(); points];
        for (r, q) in plan.queries.iter().enumerate() {
            point_rows[q.point].push(r);
        }
        // A point's rows that all see the same input (`same`: the first tuned block reads the
        // frozen prefix) share one product of their summed noise; otherwise rows go one by one.
        let groups = |rows: Vec<usize>, same: &dyn Fn(usize, usize) -> bool| -> Vec<Vec<usize>> {
            match rows.first() {
                Some(&r0) if rows.iter().all(|&r| same(r0, r)) => vec![rows],
                _ => rows.into_iter().map(|r| vec![r]).collect(),
            }
        };
        // sum_{r in group} c_r eps_r / scale_s of `site` over the group's rows that perturbed it
        // (none: `None`; site-wise rows perturb one site each). On the reference path the sums
        // of a site that feeds a tuned LayerNorm are kept until that LayerNorm's pass takes them.
        // A group is all rows of a point or one row, so its first row and size name it.
        let norms = tuned_norms(plan, ids);
        let sums: RefCell<SummedNoise> = RefCell::default();
        let key = |group: &[usize], site: LinearSite| (site, group[0], group.len());
        let summed = |group: &[usize], site: LinearSite| -> Option<Rc<Vec<f32>>> {
            if let Some(e) = sums.borrow_mut().remove(&key(group, site)) {
                return e;
            }
            let scale = plan.site_scale(site);
            // Rows in a run that share one noise tensor (an antithetic pair) add their
            // coefficients first: one pass over the noise per run.
            let mut runs: Vec<(&Rc<Vec<f32>>, f32)> = Vec::new();
            for &r in group {
                let Some(rec) = self.recorded[r].linear.get(&site) else {
                    continue;
                };
                let c = coefficients[r] / scale;
                match runs.last_mut() {
                    Some((eps, acc)) if Rc::ptr_eq(eps, &rec.eps) => *acc += c,
                    _ => runs.push((&rec.eps, c)),
                }
            }
            let (first, rest) = runs.split_first()?;
            let mut e: Vec<f32> = first.0.iter().map(|&x| first.1 * x).collect();
            for (eps, c) in rest {
                for (e, &x) in e.iter_mut().zip(eps.iter()) {
                    *e += c * x;
                }
            }
            Some(Rc::new(e))
        };
        let keep = |group: &[usize], site: LinearSite, e: &Option<Rc<Vec<f32>>>| {
            if NormSite::feeding(site).is_some_and(|n| norms.contains(&n)) {
                sums.borrow_mut().insert(key(group, site), e.clone());
            }
        };
        // Sites whose tuned LayerNorm's gradient came with their own product (fast path).
        let mut through_norm = Vec::new();
        for &site in &plan.sites {
            let Some(lin) = ids.linear(site) else { continue };
            let Some(w_off) = slot(lin.weight) else { continue };
            let w = &params[lin.weight as usize];
            let (dout, din) = (w.shape[0], w.numel() / w.shape[0]);
            let b_off = lin.bias.and_then(slot);
            let input = |r: usize| self.recorded[r].linear.get(&site).map(|x| (&x.input, x.len));
            // The fast path takes a tuned LayerNorm's share from this site's product over x_hat
            // (accumulate_through_norm); the reference runs the norm's own pass below.
            let norm = NormSite::feeding(site).filter(|n| norms.contains(n));
            let affine = norm
                .and_then(|n| ids.norm(n))
                .and_then(|(gamma, beta)| Some((gamma, beta, slot(gamma)?, slot(beta)?)))
                .filter(|_| kernels == Kernels::Gemm);
            // sum_t e[t] (x) u[t] sums over tokens, so every group's tokens stack into one product
            // (one large GEMM on the fast path instead of one small one per query row).
            let (mut e_all, mut u_all) = (self.scratch.take(), self.scratch.take());
            for rows in &point_rows {
                let rows: Vec<usize> = rows.iter().copied().filter(|&r| input(r).is_some()).collect();
                for group in groups(rows, &|a, b| same_tensor(input(a), input(b))) {
                    let e = summed(&group, site);
                    if affine.is_none() {
                        keep(&group, site, &e);
                    }
                    let Some(e) = e else { continue };
                    e_all.extend_from_slice(&e);
                    let rec = &self.recorded[group[0]];
                    let u = match affine {
                        // The site's first rows (the last block's queries: the CLS token's).
                        Some(_) => norm
                            .and_then(|n| rec.norms.get(&n))
                            .and_then(|x_hat| x_hat.get(..e.len() / dout * din))
                            .ok_or_else(|| LearnError::Config {
                                message: format!("no x_hat recorded for {site:?}'s LayerNorm in query {}", group[0]),
                            })?,
                        None => rec.linear[&site].input(),
                    };
                    u_all.extend_from_slice(u);
                }
            }
            match affine {
                Some((gamma, beta, g_off, be_off)) => {
                    let affine = (&params[gamma as usize].data[..], &params[beta as usize].data[..]);
                    let at = (w_off, b_off, g_off, be_off);
                    accumulate_through_norm(&self.scratch, grad, at, &w.data, affine, &e_all, &u_all, (dout, din));
                    through_norm.push(site);
                }
                None => accumulate_outer(kernels, &self.scratch, grad, w_off, b_off, &e_all, &u_all, (dout, din)),
            }
            self.scratch.give(e_all);
            self.scratch.give(u_all);
        }
        for norm in norms.iter().copied() {
            let Some((gamma, beta)) = ids.norm(norm) else { continue };
            let (Some(g_off), Some(b_off)) = (slot(gamma), slot(beta)) else {
                continue;
            };
            let d = params[gamma as usize].numel();
            let consumers: Vec<LinearSite> = plan
                .sites
                .iter()
                .copied()
                .filter(|&s| NormSite::feeding(s) == Some(norm) && !through_norm.contains(&s))
                .collect();
            if consumers.is_empty() {
                continue;
            }
            // Every group's x_hat stacked: rows `at .. at + len / d` of the norm's d_y.
            let x_hat = |r: usize| self.recorded[r].norms.get(&norm).map(|x| (x, x.len()));
            let mut stack: Vec<(Vec<usize>, usize, &[f32])> = Vec::new();
            let mut total = 0;
            for rows in &point_rows {
                let rows: Vec<usize> = rows.iter().copied().filter(|&r| x_hat(r).is_some()).collect();
                for group in groups(rows, &|a, b| same_tensor(x_hat(a), x_hat(b))) {
                    let xh = &self.recorded[group[0]].norms[&norm][..];
                    stack.push((group, total, xh));
                    total += xh.len() / d;
                }
            }
            let mut dy = self.scratch.zeros(total * d);
            for site in consumers {
                let Some(lin) = ids.linear(site) else { continue };
                let w = &params[lin.weight as usize].data;
                let dout = w.len() / d;
                // A site may see fewer rows than the norm (the last block's query is the CLS
                // token's only): its rows of each group are the group's first.
                let mut e_all = self.scratch.take();
                let mut at = Vec::new();
                for (group, row0, xh) in &stack {
                    let Some(e) = summed(group, site) else { continue };
                    let t = (e.len() / dout).min(xh.len() / d);
                    e_all.extend_from_slice(&e[..t * dout]);
                    at.push((*row0, t));
                }
                accumulate_back(kernels, &self.scratch, &mut dy, &at, &e_all, w, (dout, d));
                self.scratch.give(e_all);
            }
            let xh: Vec<&[f32]> = stack.iter().map(|(_, _, xh)| *xh).collect();
            accumulate_affine(kernels, grad, g_off, b_off, &dy, &xh, d);
            self.scratch.give(dy);
        }
        Ok(())
    }
}

/// A gradient's `sum_r c_r eps_r` per (site, first row and size of a group of rows): `None`
/// where no row perturbed the site.
type SummedNoise = HashMap<(LinearSite, usize, usize), Option<Rc<Vec<f32>>>>;

/// Whether two recorded tensors (`tensor[..len]`) hold the same values: the same `Rc` (the
/// queries of one image share their clean projections' input and x_hat), else bit for bit (one
/// `memcmp`). Only decides whether rows share a product, so a false "different" (`-0.0` vs
/// `0.0`) merely costs time.
fn same_tensor(a: Option<(&Rc<Vec<f32>>, usize)>, b: Option<(&Rc<Vec<f32>>, usize)>) -> bool {
    match (a, b) {
        (Some((a, la)), Some((b, lb))) => {
            la == lb
                && (Rc::ptr_eq(a, b)
                    || bytemuck::cast_slice::<f32, u8>(&a[..la]) == bytemuck::cast_slice::<f32, u8>(&b[..lb]))
        }
        (None, None) => true,
        _ => false,
    }
}

/// The LayerNorms feeding `plan`'s perturbed sites whose affine map `plan` tunes.
pub(super) fn tuned_norms(plan: &StepPlan, ids: &ParamTable) -> Vec<NormSite> {
    let mut norms: Vec<NormSite> = plan
        .sites
        .iter()
        .filter_map(|&s| NormSite::feeding(s))
        .filter(|&n| ids.norm(n).is_some_and(|(gamma, _)| plan.tensors.contains(&gamma)))
        .collect();
    norms.sort_unstable();
    norms.dedup();
    norms
}

/// `d_y[at + t] += sum_o e[t, o] W[o, :]` for each `(at, rows)` segment of the stacked `e`
/// (`[sum rows, dout]`). Under [`Kernels::Gemm`] with enough rows: one GEMM
/// `e [T, dout] x W [dout, d]` for all segments, scattered into `d_y`.
#[allow(clippy::too_many_arguments)]
fn accumulate_back(
    kernels: Kernels,
    scratch: &Scratch,
    dy: &mut [f32],
    at: &[(usize, usize)],
    e: &[f32],
    w: &[f32],
    (dout, d): (usize, usize),
) {
    let t = e.len() / dout.max(1);
    if kernels == Kernels::Gemm && t >= GEMM_MIN_ROWS {
        let mut g = scratch.zeros(t * d);
        sgemm((t, dout, d), 1.0, (e, dout, 1), (w, d, 1), 0.0, (&mut g, d, 1));
        let mut src = g.chunks_exact(d);
        for &(row0, rows) in at {
            for (dyt, gt) in dy[row0 * d..(row0 + rows) * d].chunks_exact_mut(d).zip(src.by_ref()) {
                dyt.iter_mut().zip(gt).for_each(|(y, g)| *y += g);
            }
        }
        scratch.give(g);
        return;
    }
    let mut src = e.chunks_exact(dout);
    for &(row0, rows) in at {
        for (dyt, et) in dy[row0 * d..(row0 + rows) * d].chunks_exact_mut(d).zip(src.by_ref()) {
            for (o, &eo) in et.iter().enumerate() {
                for (y, &wv) in dyt.iter_mut().zip(&w[o * d..(o + 1) * d]) {
                    *y += eo * wv;
                }
            }
        }
    }
}

/// `G_gamma += sum_t d_y[t] * x_hat[t]`, `G_beta += sum_t d_y[t]` over the stacked rows
/// (`x_hat` the segments in order). Under [`Kernels::Gemm`] the column sums run in f32 (the
/// loops vectorise) before they join the f64 gradient; the reference sums in f64.
fn accumulate_affine(
    kernels: Kernels,
    grad: &mut [f64],
    g_off: usize,
    b_off: usize,
    dy: &[f32],
    x_hat: &[&[f32]],
    d: usize,
) {
    let rows = dy.chunks_exact(d).zip(x_hat.iter().flat_map(|x| x.chunks_exact(d)));
    if kernels == Kernels::Gemm {
        let (mut sg, mut sb) = (vec![0.0f32; d], vec![0.0f32; d]);
        for (dyt, xt) in rows {
            for i in 0..d {
                sg[i] += dyt[i] * xt[i];
                sb[i] += dyt[i];
            }
        }
        add_f32(&mut grad[g_off..], &sg);
        add_f32(&mut grad[b_off..], &sb);
        return;
    }
    for (dyt, xt) in rows {
        for i in 0..d {
            grad[g_off + i] += dyt[i] as f64 * xt[i] as f64;
            grad[b_off + i] += dyt[i] as f64;
        }
    }
}

/// A site fed by a tuned LayerNorm (`u = gamma * x_hat + beta`), from one product
/// `M = E^T X_hat` (`e: [T, dout]`, `x_hat: [T, din]`) and `s = E^T 1`:
/// `G_W += M diag(gamma) + s beta^T`, `G_b += s`, and the LayerNorm's
/// `G_gamma += sum_o W[o, :] * M[o, :]` (`= sum_t d_y[t] * x_hat[t]` with `d_y = E W`),
/// `G_beta += W^T s`. This replaces the norm's own pass (a second product `E W` over the same
/// rows); [`accumulate_outer`] and the norm pass of the reference are its oracle.
#[allow(clippy::too_many_arguments)]
fn accumulate_through_norm(
    scratch: &Scratch,
    grad: &mut [f64],
    (w_off, b_off, g_off, be_off): (usize, Option<usize>, usize, usize),
    w: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    e: &[f32],
    x_hat: &[f32],
    (dout, din): (usize, usize),
) {
    let t = e.len() / dout.max(1);
    let mut m = scratch.zeros(dout * din);
    if t >= GEMM_MIN_ROWS {
        sgemm(
            (dout, t, din),
            1.0,
            (e, 1, dout),
            (x_hat, din, 1),
            0.0,
            (&mut m, din, 1),
        );
    } else {
        for (et, xt) in e.chunks_exact(dout).zip(x_hat.chunks_exact(din)) {
            for (mo, &eo) in m.chunks_exact_mut(din).zip(et) {
                mo.iter_mut().zip(xt).for_each(|(m, &x)| *m += eo * x);
            }
        }
    }
    let mut s = vec![0.0f32; dout];
    for et in e.chunks_exact(dout) {
        s.iter_mut().zip(et).for_each(|(s, &v)| *s += v);
    }
    let (mut sg, mut sb) = (vec![0.0f32; din], vec![0.0f32; din]);
    for (o, (mo, wo)) in m.chunks_exact(din).zip(w.chunks_exact(din)).enumerate() {
        let g = &mut grad[w_off + o * din..w_off + (o + 1) * din];
        for i in 0..din {
            g[i] += (mo[i] * gamma[i] + s[o] * beta[i]) as f64;
            sg[i] += wo[i] * mo[i];
            sb[i] += wo[i] * s[o];
        }
    }
    if let Some(b) = b_off {
        add_f32(&mut grad[b..], &s);
    }
    add_f32(&mut grad[g_off..], &sg);
    add_f32(&mut grad[be_off..], &sb);
    scratch.give(m);
}

/// `acc[i] += v[i]` for `i < v.len()`: f32 partial sums joining the f64 gradient.
fn add_f32(acc: &mut [f64], v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(a, &v)| *a += v as f64);
}

/// `G_W[o, i] += sum_t e[t, o] u[t, i]`, `G_b[o] += sum_t e[t, o]` at the given offsets.
/// Under [`Kernels::Gemm`] with enough tokens the weight part is one f32 GEMM
/// `E^T [dout, T] x U [T, din]` added into the f64 gradient.
#[allow(clippy::too_many_arguments)]
fn accumulate_outer(
    kernels: Kernels,
    scratch: &Scratch,
    grad: &mut [f64],
    w_off: usize,
    b_off: Option<usize>,
    e: &[f32],
    u: &[f32],
    (dout, din): (usize, usize),
) {
    let t = e.len() / dout.max(1);
    if kernels == Kernels::Gemm && t >= GEMM_MIN_ROWS {
        let mut g = scratch.zeros(dout * din);
        sgemm((dout, t, din), 1.0, (e, 1, dout), (u, din, 1), 0.0, (&mut g, din, 1));
        add_f32(&mut grad[w_off..], &g);
        scratch.give(g);
        if let Some(b) = b_off {
            let mut sb = vec![0.0f32; dout];
            for et in e.chunks_exact(dout) {
                sb.iter_mut().zip(et).for_each(|(s, &v)| *s += v);
            }
            add_f32(&mut grad[b..], &sb);
        }
        return;
    }
    for (et, ut) in e.chunks_exact(dout).zip(u.chunks_exact(din)) {
        for (o, &eo) in et.iter().enumerate() {
            let row = &mut grad[w_off + o * din..w_off + (o + 1) * din];
            for (g, &x) in row.iter_mut().zip(ut) {
                *g += eo as f64 * x as f64;
            }
            if let Some(b) = b_off {
                grad[b + o] += eo as f64;
            }
        }
    }
}
