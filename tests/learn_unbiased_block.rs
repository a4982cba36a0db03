//! The LR estimator of the head + last-block gradient against PyTorch autograd
//! (tests/fixtures/default_grad_lr.safetensors): for a fixed batch and a fixed non-uniform
//! allocation, the mean of 2000 estimates converges to the backprop gradient of every tuned
//! tensor (the last block's Q, K, V, attention output, fc1, fc2 and both LayerNorms, the final
//! LayerNorm and the classifier); the authors' row averaging does not. The empirical trace
//! covariance of the linear layers' part matches `(1/B^2) sum V_i / p_i`, with `V_i` the per-pair
//! variance the fixture script computes from autograd activations.
//!
//! The last block has ~6,700 perturbed activations per query, so this needs 1.6M queries; they
//! run on the CPU backend on two threads (a few minutes in the test profile).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cosine, Golden};
use flops_web::backend::cpu::CpuBackend;
use flops_web::learn::backend::{Backend, Batch, StepPlan};
use flops_web::learn::estimate::{EstimatorKind, Results};
use flops_web::learn::tuning::{Perturb, Tuning};
use flops_web::model::params::ParamTable;
use flops_web::model::perturb::site_stats;
use flops_web::model::{Model, ViTForImageClassification};
use pollster::block_on;

const ESTIMATES: usize = 2000;
const THREADS: usize = 2;
const SIGMA: f32 = 0.01;

/// Sums over a thread's estimates: ours, the authors', and the sum of |ours|^2.
struct Sums {
    ours: Vec<f64>,
    authors: Vec<f64>,
    sq: f64,
}

/// Tolerances: cosine >= 0.95 for ours, < 0.95 for row averaging; tr Cov within 15%.
#[test]
fn head_and_last_block_lr_estimate_is_unbiased_and_row_averaging_is_not() {
    let g = Golden::open("default_grad_lr.safetensors");
    let pixels = g.f32("pixel_values").1;
    let labels: Vec<usize> = g.i64("labels").1.iter().map(|&l| l as usize).collect();
    let alloc: Vec<usize> = g.i64("queries").1.iter().map(|&n| n as usize).collect();
    let pair_var: Vec<f64> = g.f32("lr_pair_variance").1.iter().map(|&v| v as f64).collect();
    let b = labels.len();
    let n_total: usize = alloc.iter().sum();
    assert!(alloc.iter().all(|n| n % 2 == 0), "antithetic pairs: {alloc:?}");
    assert!(
        alloc.iter().max() > alloc.iter().min(),
        "a non-uniform allocation: {alloc:?}"
    );

    let model = Model::embedded_default().unwrap();
    let layers = model.config().num_hidden_layers;
    let ids = ParamTable::of(&model.net);
    let tuning = Tuning::Last(1);
    let kind = EstimatorKind::Lr {
        sigma: SIGMA,
        antithetic: true,
    };
    let plan = StepPlan::new(kind.build().as_ref(), tuning, &ids, 7, 0, kind.build().plan(&alloc, 1));
    // The autograd gradient of every tuned tensor, in plan order.
    let params = model.net.params();
    let truth = autograd(&g, &plan, &params);
    assert_eq!(
        plan.tensors.len(),
        20,
        "7 linear layers and 3 LayerNorms, weight and bias each"
    );
    // Elements of linear layers' tensors (V_i covers those; LayerNorm affine adds no noise of its own).
    let linear: Vec<bool> = plan
        .tensors
        .iter()
        .flat_map(|&t| {
            let lin = tuning
                .lr_sites(layers)
                .iter()
                .filter_map(|&s| ids.linear(s))
                .any(|l| l.weight == t || l.bias == Some(t));
            std::iter::repeat_n(lin, params[t as usize].numel())
        })
        .collect();

    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let parts = estimate_sums(&model.net, &plan, &batch, ESTIMATES, &|plan, losses, clean| {
        let c = common::lr_coefficients(&plan.queries, losses, clean, &alloc, SIGMA);
        // The authors' averaging: every row weighted 1/N, i.e. coefficient * B n_i / N.
        let c_auth: Vec<f32> = plan
            .queries
            .iter()
            .zip(&c)
            .map(|(q, &c)| c * (b * alloc[q.point]) as f32 / n_total as f32)
            .collect();
        vec![c, c_auth]
    });
    let parts: Vec<Sums> = parts
        .into_iter()
        .map(|sums| {
            let mut it = sums.into_iter();
            let ours = it.next().unwrap();
            let sq = ours.iter().zip(&linear).filter(|(_, &l)| l).map(|(e, _)| e.1).sum();
            Sums {
                ours: ours.iter().map(|e| e.0).collect(),
                authors: it.next().unwrap().iter().map(|e| e.0).collect(),
                sq,
            }
        })
        .collect();
    let m = ESTIMATES as f64;
    let mean = |f: fn(&Sums) -> &Vec<f64>| -> Vec<f64> {
        (0..truth.len())
            .map(|i| parts.iter().map(|p| f(p)[i]).sum::<f64>() / m)
            .collect()
    };
    let ours = mean(|p| &p.ours);
    let authors = mean(|p| &p.authors);
    let sq: f64 = parts.iter().map(|p| p.sq).sum();
    let mean_sq: f64 = ours.iter().zip(&linear).filter(|(_, &l)| l).map(|(x, _)| x * x).sum();
    let tr_cov = (sq - m * mean_sq) / (m - 1.0);
    let predicted: f64 = (0..b).map(|i| pair_var[i] / (alloc[i] / 2) as f64).sum::<f64>() / (b * b) as f64;

    let cos_ours = cosine(&ours, &truth);
    // Magnitude too: the mean's component along the truth, in units of the truth (1 if unbiased).
    let scale = along(&ours, &truth);
    let cos_auth = cosine(&authors, &truth);
    let rel = (tr_cov - predicted).abs() / predicted;
    // Per tensor, to show where the remaining noise is (the key bias's true gradient is exactly
    // 0: a shift of every key changes no softmax, so its cosine is noise).
    per_tensor_cosines(&ours, &truth, &plan, &params);
    eprintln!(
        "{ESTIMATES} estimates x {n_total} queries (allocation {alloc:?}): cos(ours, autograd) {cos_ours:.4}; \
         cos(row-averaged, autograd) {cos_auth:.4}; scale along autograd {scale:.4}; tr Cov {tr_cov:.4e} vs predicted {predicted:.4e} ({:.1}% off)",
        100.0 * rel
    );
    assert!(
        cos_ours >= 0.95,
        "our estimate's mean has cosine {cos_ours} with the autograd gradient"
    );
    assert!(
        (scale - 1.0).abs() <= 0.05,
        "our estimate's mean is {scale} times the autograd gradient along it"
    );
    assert!(
        cos_auth < 0.95 && cos_auth < cos_ours - 0.05,
        "row averaging should be visibly biased: cosine {cos_auth} vs ours {cos_ours}"
    );
    assert!(
        rel <= 0.15,
        "empirical tr Cov {tr_cov} vs (1/B^2) sum V_i/p_i = {predicted} ({:.1}% off)",
        100.0 * rel
    );
}

/// Per thread, per coefficient set: the sum over `estimates` of each gradient element and of
/// its square (each estimate a new step's noise), on the CPU reference on [`THREADS`] threads.
type Coefficients<'a> = dyn Fn(&StepPlan, &[f32], &[f32]) -> Vec<Vec<f32>> + Sync + 'a;
fn estimate_sums(
    net: &ViTForImageClassification,
    plan: &StepPlan,
    batch: &Batch,
    estimates: usize,
    coefficients: &Coefficients,
) -> Vec<Vec<Vec<(f64, f64)>>> {
    let run = |thread: usize| {
        let mut backend = CpuBackend::new(net.clone());
        backend.freeze_below(plan.first_tuned);
        let clean = block_on(backend.clean(batch)).unwrap().losses;
        let mut plan = plan.clone();
        let mut sums: Vec<Vec<(f64, f64)>> = Vec::new();
        for k in 0..estimates / THREADS {
            plan.step = (thread * estimates / THREADS + k) as u32;
            let losses = block_on(backend.query_losses(batch, &plan)).unwrap();
            for (j, c) in coefficients(&plan, &losses, &clean).into_iter().enumerate() {
                let est = block_on(backend.gradient(&plan, &c)).unwrap();
                if sums.len() <= j {
                    sums.push(vec![(0.0, 0.0); est.len()]);
                }
                for (s, &e) in sums[j].iter_mut().zip(&est) {
                    s.0 += e as f64;
                    s.1 += e as f64 * e as f64;
                }
            }
        }
        sums
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS).map(|t| scope.spawn(move || run(t))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Site-wise LR (one site per query, flops-method.md section 7) at the training noise: one-sided,
/// sigma 0.01 relative to each site's activation RMS, over a non-uniform allocation of image x
/// site cells. The mean of the estimates converges to autograd's gradient (tolerances as above:
/// cosine >= 0.95, scale within 5%), so starting a late site's query from the clean stream
/// there and giving each site only its own queries keeps the estimate unbiased.
#[test]
fn site_wise_estimate_is_unbiased_at_the_training_noise() {
    let g = Golden::open("default_grad_lr.safetensors");
    let pixels = g.f32("pixel_values").1;
    let labels: Vec<usize> = g.i64("labels").1.iter().map(|&l| l as usize).collect();
    let point_alloc: Vec<usize> = g.i64("queries").1.iter().map(|&n| n as usize).collect();
    let model = Model::embedded_default().unwrap();
    let ids = ParamTable::of(&model.net);
    let kind = EstimatorKind::Lr {
        sigma: SIGMA,
        antithetic: false,
    };
    let mut plan = StepPlan::new(kind.build().as_ref(), Tuning::Last(1), &ids, 9, 0, Vec::new());
    plan.groups = Perturb::Site.groups(&plan.sites);
    plan.site_scales = site_stats(&model.net, &pixels, &plan.sites)
        .iter()
        .map(|s| s.rms)
        .collect();
    let groups = plan.groups.len();
    assert_eq!(groups, 7, "Q, K, V, attention output, fc1, fc2, classifier");
    // Cells: the fixture's point shares times 1..3 by site, at least one query each.
    let cells: Vec<usize> = point_alloc
        .iter()
        .flat_map(|&n| (0..groups).map(move |s| (n / 40).max(1) * (1 + s % 3)))
        .collect();
    plan.queries = kind.build().plan(&cells, groups);
    let params = model.net.params();
    let truth = autograd(&g, &plan, &params);
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    const SITE_ESTIMATES: usize = 1000;
    let parts = estimate_sums(&model.net, &plan, &batch, SITE_ESTIMATES, &|plan, losses, clean| {
        vec![kind.build().coefficients(&Results {
            queries: &plan.queries,
            losses,
            baselines: clean,
            alloc: &cells,
            groups,
        })]
    });
    let mean: Vec<f64> = (0..truth.len())
        .map(|i| parts.iter().map(|s| s[0][i].0).sum::<f64>() / SITE_ESTIMATES as f64)
        .collect();
    per_tensor_cosines(&mean, &truth, &plan, &params);
    let cos = cosine(&mean, &truth);
    let scale = along(&mean, &truth);
    eprintln!(
        "site-wise: {SITE_ESTIMATES} estimates x {} queries over {} cells: cos(mean, autograd) {cos:.4}, scale {scale:.4}",
        plan.queries.len(),
        cells.len()
    );
    assert!(cos >= 0.95, "site-wise estimate's mean has cosine {cos} with autograd");
    assert!(
        (scale - 1.0).abs() <= 0.05,
        "site-wise estimate's mean is {scale} x autograd along it"
    );
}

/// The fixture's autograd gradient of every tuned tensor, flat in plan order.
fn autograd(g: &Golden, plan: &StepPlan, params: &[&flops_web::model::nn::Param]) -> Vec<f64> {
    plan.tensors
        .iter()
        .flat_map(|&t| g.f32(&format!("grad.{}", params[t as usize].name)).1)
        .map(|v| v as f64)
        .collect()
}

/// Prints each tensor's cosine between the mean estimate and the truth (where the noise is).
fn per_tensor_cosines(mean: &[f64], truth: &[f64], plan: &StepPlan, params: &[&flops_web::model::nn::Param]) {
    let mut off = 0;
    for &t in &plan.tensors {
        let n = params[t as usize].numel();
        let c = cosine(&mean[off..off + n], &truth[off..off + n]);
        eprintln!("  {:55} cosine {c:.3}", params[t as usize].name);
        off += n;
    }
}

/// The component of `a` along `b`, in units of `b` (1 if `a`'s mean is unbiased).
fn along(a: &[f64], b: &[f64]) -> f64 {
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    dot(a, b) / dot(b, b)
}
