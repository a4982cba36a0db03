//! The LR estimator against PyTorch autograd (tests/fixtures/default_grad.safetensors):
//! averaged over many steps with a fixed non-uniform allocation, our `1/(B n_i)` weighting
//! converges to the true batch gradient; the authors' row averaging converges to a different,
//! loss-reweighted vector. Also: the empirical trace covariance matches `(1/B^2) sum V_i / n_i`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{cosine, Golden};
use flops_web::backend::cpu::CpuBackend;
use flops_web::learn::backend::{Backend, Batch, StepPlan};
use flops_web::learn::estimate::EstimatorKind;
use flops_web::learn::tuning::Tuning;
use flops_web::model::params::ParamTable;
use flops_web::model::Model;
use pollster::block_on;

struct Setup {
    backend: CpuBackend,
    pixels: Vec<f32>,
    labels: Vec<usize>,
    clean_losses: Vec<f32>,
    /// The batch-mean head gradient (autograd) and per-sample head gradients `[B][weight ++ bias]`.
    truth: Vec<f64>,
    per_sample: Vec<Vec<f64>>,
    plan: StepPlan,
}

fn setup(kind: EstimatorKind, alloc: &[usize]) -> Setup {
    let g = Golden::open("default_grad.safetensors");
    let (_, pixels) = g.f32("pixel_values");
    let labels: Vec<usize> = g.i64("labels").1.iter().map(|&l| l as usize).collect();
    let truth: Vec<f64> = [g.f32("grad.classifier.weight").1, g.f32("grad.classifier.bias").1]
        .concat()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let (_, psw) = g.f32("grad_per_sample.classifier.weight");
    let (_, psb) = g.f32("grad_per_sample.classifier.bias");

    let per_sample: Vec<Vec<f64>> = (0..labels.len())
        .map(|i| {
            psw[i * 640..(i + 1) * 640]
                .iter()
                .chain(&psb[i * 10..(i + 1) * 10])
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    let model = Model::embedded_default().unwrap();
    let ids = ParamTable::of(&model.net);
    let layers = model.config().num_hidden_layers;
    let mut backend = CpuBackend::new(model.net);
    backend.freeze_below(Tuning::Head.first_tuned_block(layers));
    let clean = block_on(backend.clean(&Batch {
        pixels: &pixels,
        labels: &labels,
    }))
    .unwrap();
    let plan = StepPlan::new(
        kind.build().as_ref(),
        Tuning::Head,
        &ids,
        42,
        0,
        kind.build().plan(alloc, 1),
    );
    Setup {
        backend,
        pixels,
        labels,
        clean_losses: clean.losses,
        truth,
        per_sample,
        plan,
    }
}

/// Tolerances: cosine >= 0.95 between the mean of 2000 estimates and its target.
#[test]
fn head_lr_estimate_is_unbiased_and_row_averaging_is_not() {
    // Strongly non-uniform, fixed allocation (antithetic pairs): 40 queries for 8 points.
    let alloc = [2usize, 2, 2, 2, 2, 2, 2, 26];
    let sigma = 0.01;
    let Setup {
        mut backend,
        pixels,
        labels,
        clean_losses,
        truth,
        per_sample,
        mut plan,
    } = setup(
        EstimatorKind::Lr {
            sigma,
            antithetic: true,
        },
        &alloc,
    );
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let n_est = 2000;
    let dim = truth.len();
    let (mut ours, mut authors) = (vec![0.0f64; dim], vec![0.0f64; dim]);
    let n_total: usize = alloc.iter().sum();
    for step in 0..n_est {
        plan.step = step as u32;
        let losses = block_on(backend.query_losses(&batch, &plan)).unwrap();
        let c = common::lr_coefficients(&plan.queries, &losses, &clean_losses, &alloc, sigma);
        let est = block_on(backend.gradient(&plan, &c)).unwrap();
        // The authors' averaging: every row weighted 1/N, i.e. coefficient * B n_i / N.
        let c_auth: Vec<f32> = plan
            .queries
            .iter()
            .zip(&c)
            .map(|(q, &c)| c * (alloc.len() * alloc[q.point]) as f32 / n_total as f32)
            .collect();
        let est_auth = block_on(backend.gradient(&plan, &c_auth)).unwrap();
        for k in 0..dim {
            ours[k] += est[k] as f64 / n_est as f64;
            authors[k] += est_auth[k] as f64 / n_est as f64;
        }
    }
    // What row averaging estimates: sum_i (n_i / N) grad l_i.
    let reweighted: Vec<f64> = (0..dim)
        .map(|k| {
            (0..alloc.len())
                .map(|i| alloc[i] as f64 / n_total as f64 * per_sample[i][k])
                .sum()
        })
        .collect();
    let cos_ours = cosine(&ours, &truth);
    // Magnitude too: the mean's component along the truth, in units of the truth (1 if unbiased).
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let scale = dot(&ours, &truth) / dot(&truth, &truth);
    eprintln!("scale of our mean along autograd: {scale:.4}");
    assert!(
        (scale - 1.0).abs() <= 0.05,
        "our estimate's mean is {scale} times the autograd gradient along it"
    );
    let cos_auth_truth = cosine(&authors, &truth);
    let cos_auth_reweighted = cosine(&authors, &reweighted);
    eprintln!("cos(ours, autograd) {cos_ours:.4}; cos(row-averaged, autograd) {cos_auth_truth:.4}; cos(row-averaged, reweighted) {cos_auth_reweighted:.4}");
    assert!(
        cos_ours >= 0.95,
        "our estimate's mean has cosine {cos_ours} with the autograd gradient"
    );
    assert!(
        cos_auth_reweighted >= 0.95,
        "row averaging should estimate the reweighted gradient: {cos_auth_reweighted}"
    );
    assert!(
        cos_auth_truth < cos_ours - 0.05,
        "row averaging should be visibly biased: {cos_auth_truth} vs {cos_ours}"
    );
}

/// ES (one-sided weight space, clean baseline) on the head: the mean of 2,000 estimates with a
/// non-uniform allocation (directions shared across the batch) has cosine >= 0.95 with the
/// autograd gradient and its component along it is 1 within 5%. Predicted: one estimate's
/// trace variance is about `sum_k (d + 1) |G_k|^2`, `G_k = sum_{i: n_i > k} grad l_i / (B n_i)`,
/// `d` = 650 head parameters, so the mean of 2,000 has cosine ~0.98.
#[test]
fn head_es_estimate_is_unbiased() {
    let alloc = [2usize, 4, 4, 6, 8, 8, 10, 22];
    let sigma = 0.01;
    let kind = EstimatorKind::Es { sigma };
    let Setup {
        mut backend,
        pixels,
        labels,
        clean_losses,
        truth,
        mut plan,
        ..
    } = setup(kind, &alloc);
    assert!(matches!(plan.space, flops_web::learn::Space::Weight { .. }));
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let n_est = 2000;
    let mut mean = vec![0.0f64; truth.len()];
    for step in 0..n_est {
        plan.step = step as u32;
        let losses = block_on(backend.query_losses(&batch, &plan)).unwrap();
        let c = common::coefficients(kind, &plan.queries, &losses, &clean_losses, &alloc);
        let est = block_on(backend.gradient(&plan, &c)).unwrap();
        for (m, &e) in mean.iter_mut().zip(&est) {
            *m += e as f64 / n_est as f64;
        }
    }
    let cos = cosine(&mean, &truth);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let scale = dot(&mean, &truth) / dot(&truth, &truth);
    eprintln!("ES: cos(mean, autograd) {cos:.4}, scale along autograd {scale:.4}");
    assert!(cos >= 0.95, "ES mean has cosine {cos} with the autograd gradient");
    assert!(
        (scale - 1.0).abs() <= 0.05,
        "ES mean is {scale} times the autograd gradient along it"
    );
}

/// One-sided LR on the head with the per-point baseline: one query of point `i` has
/// `tr Var = (d + 1) |grad l_i|^2` to leading order in sigma (d = 10 logits, noise on the CLS
/// row only), so `tr Cov(g_hat) = (1/B^2) sum_i (d + 1) |grad l_i|^2 / n_i` with the per-sample
/// gradients from autograd. Tolerance: 15%.
#[test]
fn head_lr_trace_covariance_matches_the_formula() {
    let alloc = [1usize, 1, 2, 3, 4, 5, 6, 18];
    let sigma = 1e-3;
    let Setup {
        mut backend,
        pixels,
        labels,
        clean_losses,
        per_sample,
        mut plan,
        ..
    } = setup(
        EstimatorKind::Lr {
            sigma,
            antithetic: false,
        },
        &alloc,
    );
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let b = alloc.len() as f64;
    let d = 10.0;
    let predicted: f64 = (0..alloc.len())
        .map(|i| (d + 1.0) * per_sample[i].iter().map(|v| v * v).sum::<f64>() / alloc[i] as f64)
        .sum::<f64>()
        / (b * b);
    let n_est = 3000;
    let dim = per_sample[0].len();
    let (mut sum, mut sum_sq) = (vec![0.0f64; dim], 0.0f64);
    for step in 0..n_est {
        plan.step = step as u32;
        let losses = block_on(backend.query_losses(&batch, &plan)).unwrap();
        let c = common::lr_coefficients(&plan.queries, &losses, &clean_losses, &alloc, sigma);
        let est = block_on(backend.gradient(&plan, &c)).unwrap();
        for (s, &e) in sum.iter_mut().zip(&est) {
            *s += e as f64;
        }
        sum_sq += est.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
    }
    let n = n_est as f64;
    let tr_cov = (sum_sq - sum.iter().map(|s| s * s).sum::<f64>() / n) / (n - 1.0);
    let rel = (tr_cov - predicted).abs() / predicted;
    eprintln!("tr Cov empirical {tr_cov:.4e}, predicted {predicted:.4e}, relative difference {rel:.3}");
    assert!(
        rel <= 0.15,
        "empirical tr Cov {tr_cov} vs (1/B^2) sum V_i/n_i = {predicted} ({:.1}% off)",
        100.0 * rel
    );
}

/// The flops allocator learns from real one-sided LR queries: on a batch with spread clean losses
/// (0.18 to 9.5) the measured per-point variance grows with the loss, so the slope `a` of
/// `mu_i = a u_i + c` must turn positive within 200 steps (the parameters are not updated, so the
/// batch stays the same).
#[test]
fn flops_allocator_slope_turns_positive_on_one_sided_lr() {
    use flops_web::learn::allocate::{Allocator, BatchStats, Budget, Feedback, FlopsGaussian, FlopsParams};
    use flops_web::learn::estimate::Results;
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: false,
    };
    let Setup {
        mut backend,
        pixels,
        labels,
        clean_losses,
        mut plan,
        ..
    } = setup(kind, &[1; 8]);
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let spread =
        clean_losses.iter().cloned().fold(f32::MIN, f32::max) - clean_losses.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 5.0, "the fixture batch has spread losses: {clean_losses:?}");
    let budget = Budget {
        total: 8 * 6,
        min_per_point: 1,
        unit: 1,
    };
    let proxy = vec![0.0f32; 8];
    // Control: the same updates with a flat variance proxy must not learn a slope.
    let mut control = FlopsGaussian::new(5, FlopsParams::default());
    for _ in 0..200 {
        let stats = BatchStats {
            losses: &clean_losses,
            variance_proxy: &proxy,
        };
        let n = control.allocate(&stats, budget).unwrap();
        control.update(
            &Feedback {
                stats,
                allocation: &n,
                measured: &[1.0; 8],
            },
            budget,
        );
    }
    let mut alloc = FlopsGaussian::new(5, FlopsParams::default());
    let mut turned = None;
    for step in 0..200 {
        let stats = BatchStats {
            losses: &clean_losses,
            variance_proxy: &proxy,
        };
        let n = alloc.allocate(&stats, budget).unwrap();
        plan.step = step as u32;
        plan.queries = kind.build().plan(&n, 1);
        let losses = block_on(backend.query_losses(&batch, &plan)).unwrap();
        let m = kind.build().measured_variance(&Results {
            queries: &plan.queries,
            losses: &losses,
            baselines: &clean_losses,
            alloc: &n,
            groups: 1,
        });
        alloc.update(
            &Feedback {
                stats,
                allocation: &n,
                measured: &m,
            },
            budget,
        );
        if alloc.lambda[0] > 0.0 && turned.is_none() {
            turned = Some(step + 1);
        }
    }
    let (a, a0) = (alloc.lambda[0], control.lambda[0]);
    eprintln!("slope a after 200 steps: {a:.3} (first positive at step {turned:?}); flat-variance control: {a0:.3}");
    assert!(a > 0.5, "slope a = {a}");
    assert!(
        a > a0 + 0.5,
        "the slope must come from the measured variances: {a} vs control {a0}"
    );
}

/// The CPU backend keeps the last query forward's noise for the gradient: asking for the
/// gradient of another step is an error, not a silent estimate from the wrong noise.
#[test]
fn gradient_needs_its_own_query_forward() {
    let alloc = [2usize; 8];
    let kind = EstimatorKind::Lr {
        sigma: 0.01,
        antithetic: true,
    };
    let Setup {
        mut backend,
        pixels,
        labels,
        clean_losses,
        mut plan,
        ..
    } = setup(kind, &alloc);
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let losses = block_on(backend.query_losses(&batch, &plan)).unwrap();
    let c = common::lr_coefficients(&plan.queries, &losses, &clean_losses, &alloc, 0.01);
    assert!(block_on(backend.gradient(&plan, &c)).is_ok());
    plan.step += 1;
    let err = block_on(backend.gradient(&plan, &c)).unwrap_err().to_string();
    assert!(err.contains("without that step's query forward"), "{err}");
}

/// A label beyond the model's classes is a clear error from the CPU backend (in the browser a
/// panic would cross the wasm boundary), as it is from the GPU backend's plan check.
#[test]
fn out_of_range_label_is_an_error() {
    let Setup {
        mut backend, pixels, ..
    } = setup(
        EstimatorKind::Lr {
            sigma: 0.01,
            antithetic: true,
        },
        &[2; 8],
    );
    let labels = [0usize, 1, 2, 3, 4, 5, 6, 10];
    let err = block_on(backend.clean(&Batch {
        pixels: &pixels,
        labels: &labels,
    }))
    .unwrap_err()
    .to_string();
    assert!(err.contains("label 10") && err.contains("10 classes"), "{err}");
}
