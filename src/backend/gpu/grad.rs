//! Recording a step's gradient estimate into one flat GPU tensor `g: [total]` over the tuned
//! tensors, in `plan.tensors` order. Layer inputs stay on the GPU; only the coefficients
//! (one f32 per LR query or per SPSA direction) are uploaded.

use std::collections::HashMap;
use std::ops::Range;

use crate::gpu::context::GpuContext;
use crate::gpu::error::{GpuError, Result};
use crate::gpu::forward::LrInputs;
use crate::gpu::model::GpuModel;
use crate::gpu::ops::{self, Op};
use crate::gpu::tensor::{upload_bytes, upload_u32, GpuTensor};
use crate::learn::backend::StepPlan;
use crate::model::perturb::lr_noise_tokens;
use crate::model::{FlatLayout as Layout, LinearSite, NormSite, ParamTable};

/// The flat layout of the tuned tensors (gradient, optimiser state), from the parameter table.
pub(super) fn layout(model: &GpuModel, tensors: &[u32]) -> Result<Layout> {
    let layout = model.ids.layout(tensors).map_err(plan_err)?;
    if layout.total == 0 {
        return Err(plan_err("no tuned parameters".into()));
    }
    Ok(layout)
}

fn plan_err(reason: String) -> GpuError {
    GpuError::Plan { reason }
}

/// LR: `G_W += sum_r c_r sum_t eps_r[t] (x) u_r[t]`, `G_b += sum_r c_r sum_t eps_r[t]` for every
/// kept input of a tuned site; for a tuned LayerNorm feeding such sites,
/// `d_y = sum_sites (c_r eps_r) W`, `G_gamma += sum d_y * x_hat`, `G_beta += sum d_y`, taken
/// from each site's product over x_hat ([`ops::grad_through_norm`]).
/// `inputs` are the last forward's (internal row order).
#[allow(clippy::too_many_arguments)]
pub(super) fn record_lr(
    ctx: &GpuContext,
    model: &GpuModel,
    plan: &StepPlan,
    inputs: &LrInputs,
    coefficients: &[f32],
    layout: &Layout,
    g: &GpuTensor,
    ops: &mut Vec<Op>,
) -> Result<()> {
    if coefficients.len() != plan.queries.len() || inputs.order.len() != plan.queries.len() {
        return Err(plan_err(format!(
            "{} coefficients and {} forward rows for {} queries",
            coefficients.len(),
            inputs.order.len(),
            plan.queries.len()
        )));
    }
    // (kept input, weight, weight slot, bias slot, out dim, in dim, tokens) of every tuned site.
    let mut work = Vec::new();
    let mut widest = 0;
    let mut widest_ms = 0;
    for kept in &inputs.kept {
        if !plan.sites.contains(&kept.site) {
            continue;
        }
        let Some(lin) = model.ids.linear(kept.site) else {
            continue;
        };
        let Some(w_off) = layout.offset(lin.weight) else {
            continue;
        };
        let w = model.get(lin.weight)?;
        let n = w.shape.first().copied().unwrap_or(0).max(1);
        let k = w.numel() / n;
        let rows = kept.rows.len();
        if rows == 0 || !kept.tensor.numel().is_multiple_of(rows * k) {
            return Err(plan_err(format!(
                "kept input of {:?} has shape {:?}, not [{rows}, _, {k}]",
                kept.site, kept.tensor.shape
            )));
        }
        let tokens = kept.tensor.numel() / (rows * k);
        widest = widest.max(rows * tokens * n);
        widest_ms = widest_ms.max(n * k + n);
        let b_off = lin.bias.and_then(|b| layout.offset(b));
        work.push((kept, w, w_off, b_off, n, k, tokens));
    }
    if work.is_empty() {
        return Ok(());
    }
    let e_all = GpuTensor::zeros(ctx, "scaled LR noise", &[widest])?;
    // `[M, s]` of the widest norm-fed site (`E^T x_hat`, `E^T 1`).
    let ms_all = GpuTensor::zeros(ctx, "E^T x_hat and E^T 1", &[widest_ms.max(1)])?;
    // Rows' coefficients per (rows, coefficient scale): site-wise rows count only at the sites
    // they perturbed, and a site's noise scale divides its coefficients.
    let mut tables: HashMap<(Range<usize>, Option<LinearSite>, u32), wgpu::Buffer> = HashMap::new();
    let site_wise = plan.groups.len() > 1;
    // Per chunk: the bounds of its runs of rows of one image (chunk rows), and the first row of
    // each run. The first tuned block's Q, K and V read the frozen prefix fanned out to the
    // image's rows, so a run shares one input: its noise sums first (lr_noise_sum) and the
    // products run over images instead of rows.
    let mut runs: HashMap<Range<usize>, (Vec<u32>, Option<wgpu::Buffer>)> = HashMap::new();
    // Inputs and x_hat gathered to one row per run, per (chunk, tensor).
    let mut gathered: HashMap<(Range<usize>, &'static str, usize), GpuTensor> = HashMap::new();
    for (kept, w, w_off, b_off, n, k, tokens) in work {
        let rows = kept.rows.len();
        if !runs.contains_key(&kept.rows) {
            let point = |internal: usize| -> Result<usize> {
                let r = *inputs
                    .order
                    .get(internal)
                    .ok_or_else(|| plan_err(format!("internal row {internal} beyond the forward")))?;
                Ok(plan.queries[r].point)
            };
            let mut bounds = vec![0u32];
            for internal in kept.rows.start + 1..kept.rows.end {
                if point(internal)? != point(internal - 1)? {
                    bounds.push((internal - kept.rows.start) as u32);
                }
            }
            let firsts = (bounds.len() < rows)
                .then(|| upload_u32(ctx, "first row of each image's run", &bounds))
                .transpose()?;
            bounds.push(rows as u32);
            runs.insert(kept.rows.clone(), (bounds, firsts));
        }
        let (bounds, firsts) = &runs[&kept.rows];
        let shared = matches!(
            kept.site,
            LinearSite::Query(l) | LinearSite::Key(l) | LinearSite::Value(l) if l == plan.first_tuned
        );
        let firsts = firsts.as_ref().filter(|_| shared);
        let scale = plan.site_scale(kept.site);
        let key = (kept.rows.clone(), site_wise.then_some(kept.site), scale.to_bits());
        let table = match tables.get(&key) {
            Some(t) => t.clone(),
            None => {
                let mut words = Vec::with_capacity(2 * rows + bounds.len());
                for internal in kept.rows.clone() {
                    let r = *inputs
                        .order
                        .get(internal)
                        .ok_or_else(|| plan_err(format!("internal row {internal} beyond the forward")))?;
                    let q = &plan.queries[r];
                    let c = if plan.perturbs(q, kept.site) {
                        coefficients[r] / scale
                    } else {
                        0.0
                    };
                    words.extend([c.to_bits(), q.noise]);
                }
                words.extend_from_slice(bounds);
                let t = upload_u32(ctx, "LR row coefficients", &words)?;
                tables.insert(key, t.clone());
                t
            }
        };
        let site_id = ParamTable::site_id(kept.site);
        let noise_tokens = lr_noise_tokens(kept.site, model.ids.layers.len(), model.config.seq_len());
        // `m`: the rows of the products (runs when they share an input).
        let segments = firsts.map(|_| bounds.len() - 1);
        let m = segments.unwrap_or(rows);
        let e = e_all.view(&[m, tokens, n])?;
        let rows_in = (rows, segments);
        ops.push(ops::lr_noise(
            plan.seed,
            plan.step,
            site_id,
            &table,
            rows_in,
            tokens,
            noise_tokens,
            n,
            &e,
        )?);
        // `src` ([rows, tokens, k]) as the products read it: one row per run when shared.
        let mut rows_of = |src: &GpuTensor, what: &'static str| -> Result<GpuTensor> {
            let src = src.view(&[rows, tokens, k])?;
            let Some(idx) = firsts else { return Ok(src) };
            let key = (kept.rows.clone(), what, k);
            if let Some(t) = gathered.get(&key) {
                return Ok(t.clone());
            }
            let dst = GpuTensor::zeros(ctx, "an input per image", &[m, tokens, k])?;
            ops.push(ops::gather(&src, idx, m, tokens * k, tokens * k, 0, &dst)?);
            gathered.insert(key, dst.clone());
            Ok(dst)
        };
        let tuned_norm = NormSite::feeding(kept.site).and_then(|norm| {
            let (gamma, beta) = model.ids.norm(norm)?;
            layout.offset(gamma)?;
            Some((norm, gamma, beta))
        });
        let Some((norm, gamma, beta)) = tuned_norm else {
            let u = rows_of(&kept.tensor, "input")?;
            ops.push(ops::grad_outer(&e, &u, (m, tokens), g, w_off, false)?);
            if let Some(b) = b_off {
                ops.push(ops::grad_bias(&e, (m, tokens), g, b, false)?);
            }
            continue;
        };
        // The norm's share comes with the site's own product, over x_hat instead of the input.
        let (Some(gamma_off), Some(beta_off)) = (layout.offset(gamma), layout.offset(beta)) else {
            return Err(plan_err(format!("{norm:?}: gamma tuned without beta")));
        };
        let x_hat = inputs
            .norms
            .iter()
            .find(|x| x.norm == norm && x.rows == kept.rows)
            .ok_or_else(|| plan_err(format!("no x_hat kept for {norm:?} rows {:?}", kept.rows)))?;
        let x_hat = rows_of(&x_hat.tensor, "x_hat")?;
        // One scratch for every norm-fed site (the ops run in order); each overwrites its part.
        let ms = ms_all.view(&[n * k + n])?;
        ops.push(ops::grad_outer(&e, &x_hat, (m, tokens), &ms, 0, true)?);
        ops.push(ops::grad_bias(&e, (m, tokens), &ms, n * k, true)?);
        let at = ops::ThroughNorm {
            weight: w_off,
            bias: b_off,
            gamma: gamma_off,
            beta: beta_off,
        };
        ops.push(ops::grad_through_norm(
            &ms,
            w,
            model.get(gamma)?,
            model.get(beta)?,
            g,
            at,
        )?);
    }
    Ok(())
}

/// SPSA: `G_t += sum_k c_k z_k(t)` for every tuned tensor, `z_k` regenerated in the shader.
pub(super) fn record_spsa(
    ctx: &GpuContext,
    model: &GpuModel,
    plan: &StepPlan,
    coefficients: &[f32],
    layout: &Layout,
    g: &GpuTensor,
    ops: &mut Vec<Op>,
) -> Result<()> {
    if coefficients.is_empty() {
        return Ok(());
    }
    let coeff = upload_bytes(ctx, "SPSA coefficients", bytemuck::cast_slice(coefficients))?;
    for (&t, &off) in layout.tensors.iter().zip(&layout.offsets) {
        let n = model.get(t)?.numel();
        ops.push(ops::spsa_grad(
            plan.seed,
            plan.step,
            t,
            n,
            &coeff,
            coefficients.len(),
            g,
            off,
        )?);
    }
    Ok(())
}
