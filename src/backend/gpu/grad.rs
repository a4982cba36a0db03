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
        let b_off = lin.bias.and_then(|b| layout.offset(b));
        work.push((kept, w, w_off, b_off, n, k, tokens));
    }
    if work.is_empty() {
        return Ok(());
    }
    let e_all = GpuTensor::zeros(ctx, "scaled LR noise", &[widest])?;
    // Rows' coefficients per (rows, coefficient scale): site-wise rows count only at the sites
    // they perturbed, and a site's noise scale divides its coefficients.
    let mut tables: HashMap<(Range<usize>, Option<LinearSite>, u32), wgpu::Buffer> = HashMap::new();
    let site_wise = plan.groups.len() > 1;
    for (kept, w, w_off, b_off, n, k, tokens) in work {
        let rows = kept.rows.len();
        let scale = plan.site_scale(kept.site);
        let key = (kept.rows.clone(), site_wise.then_some(kept.site), scale.to_bits());
        let table = match tables.get(&key) {
            Some(t) => t.clone(),
            None => {
                let mut words = Vec::with_capacity(2 * rows);
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
                let t = upload_u32(ctx, "LR row coefficients", &words)?;
                tables.insert(key, t.clone());
                t
            }
        };
        let e = e_all.view(&[rows, tokens, n])?;
        let u = kept.tensor.view(&[rows, tokens, k])?;
        ops.push(ops::lr_noise(
            plan.seed,
            plan.step,
            ParamTable::site_id(kept.site),
            &table,
            rows,
            tokens,
            lr_noise_tokens(kept.site, model.ids.layers.len(), model.config.seq_len()),
            n,
            &e,
        )?);
        let tuned_norm = NormSite::feeding(kept.site).and_then(|norm| {
            let (gamma, beta) = model.ids.norm(norm)?;
            layout.offset(gamma)?;
            Some((norm, gamma, beta))
        });
        let Some((norm, gamma, beta)) = tuned_norm else {
            ops.push(ops::grad_outer(&e, &u, rows, tokens, g, w_off)?);
            if let Some(b) = b_off {
                ops.push(ops::grad_bias(&e, rows, tokens, g, b)?);
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
        let x_hat = x_hat.tensor.view(&[rows, tokens, k])?;
        let ms = GpuTensor::zeros(ctx, "E^T x_hat and E^T 1", &[n * k + n])?;
        ops.push(ops::grad_outer(&e, &x_hat, rows, tokens, &ms, 0)?);
        ops.push(ops::grad_bias(&e, rows, tokens, &ms, n * k)?);
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
