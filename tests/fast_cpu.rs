//! The fast CPU path (every dense product through `matrixmultiply`, `Kernels::Gemm`) against the
//! plain-loop reference: logits of the embedded model on the sample images and of the HF
//! fixture ViT (3 channels, 2 heads), and a whole LR step's query losses and gradient with
//! the last block tuned. Tolerances: logits and losses max |err| <= 1e-4; gradients
//! max |err| <= 1e-4 * max |g| (float reassociation only).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{fixture, load_dir};
use flops_web::backend::cpu::CpuBackend;
use flops_web::learn::backend::{Backend, Batch, StepPlan};
use flops_web::learn::tuning::Tuning;
use flops_web::learn::EstimatorKind;
use flops_web::model::nn::Kernels;
use flops_web::model::{Image, Model, NoHook, ParamTable};
use pollster::block_on;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn samples(model: &Model) -> Vec<f32> {
    let mut px = Vec::new();
    for e in std::fs::read_dir(common::root().join("assets/samples")).unwrap() {
        let img = Image::decode(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        px.extend(model.preprocessor.apply(&img).unwrap());
    }
    px
}

#[test]
fn gemm_logits_match_the_reference() {
    for (name, model) in [
        ("default", Model::embedded_default().unwrap()),
        ("tiny_vit_hf", load_dir(&fixture("tiny_vit_hf"))),
    ] {
        let px = if name == "default" {
            samples(&model)
        } else {
            (0..3 * model.config().image_numel())
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect()
        };
        let want = model.net.forward_batch(&px).unwrap();
        let mut fast = model.net.clone();
        fast.set_kernels(Kernels::Gemm);
        let got = fast.forward_batch(&px).unwrap();
        let err = max_diff(&got, &want);
        eprintln!("{name}: gemm vs reference logits max |err| {err:.3e}");
        assert!(err <= 1e-4, "{name}: {err}");
        // The last block's CLS-only path and the frozen prefix go through the same kernels.
        let one = &px[..model.config().image_numel()];
        assert!(max_diff(&fast.forward(one, &mut NoHook), &model.net.forward(one, &mut NoHook)) <= 1e-4);
    }
}

#[test]
fn fast_backend_step_matches_the_reference() {
    let model = Model::embedded_default().unwrap();
    let px = samples(&model);
    let n = 6;
    let px = &px[..n * model.config().image_numel()];
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let batch = Batch {
        pixels: px,
        labels: &labels,
    };
    let kind = EstimatorKind::Lr {
        sigma: 0.1,
        antithetic: true,
    };
    let alloc = [2, 4, 2, 6, 2, 4];
    let table = ParamTable::of(&model.net);
    let plan = StepPlan::new(
        kind.build().as_ref(),
        Tuning::Last(1),
        &table,
        3,
        0,
        kind.build().plan(&alloc, 1),
    );
    let mut out = Vec::new();
    for mut b in [CpuBackend::new(model.net.clone()), CpuBackend::fast(model.net.clone())] {
        b.freeze_below(plan.first_tuned);
        let clean = block_on(b.clean(&batch)).unwrap();
        let losses = block_on(b.query_losses(&batch, &plan)).unwrap();
        let c = common::coefficients(kind, &plan.queries, &losses, &clean.losses, &alloc);
        let g = block_on(b.gradient(&plan, &c)).unwrap();
        out.push((clean.losses, losses, g));
    }
    let (r, f) = (&out[0], &out[1]);
    let (e_clean, e_q) = (max_diff(&f.0, &r.0), max_diff(&f.1, &r.1));
    let scale = r.2.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let e_g = max_diff(&f.2, &r.2);
    eprintln!("clean {e_clean:.3e}, queries {e_q:.3e}, gradient {e_g:.3e} of max {scale:.3e}");
    assert!(e_clean <= 1e-4 && e_q <= 1e-4, "losses: {e_clean} {e_q}");
    assert!(e_g <= 1e-4 * scale, "gradient: {e_g} vs max {scale}");
    // Tensor by tensor as well (the LayerNorms' share is small beside the weights', and the fast
    // path takes it from the weight product over x_hat rather than the reference's own pass).
    let layout = table.layout(&plan.tensors).unwrap();
    let params = model.net.params();
    for (i, &t) in plan.tensors.iter().enumerate() {
        let range = layout.range_at(i);
        let (gr, gf) = (&r.2[range.clone()], &f.2[range]);
        let scale = gr.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let err = max_diff(gf, gr);
        assert!(scale > 0.0, "{}: no gradient", params[t as usize].name);
        assert!(err <= 1e-4 * scale, "{}: {err} vs max {scale}", params[t as usize].name);
    }
}
