//! The exact head option's gradient of the classifier and the final LayerNorm, from the clean
//! pass alone, against PyTorch autograd (tests/fixtures/default_grad_lr.safetensors: the mean
//! cross-entropy of a fixed batch of the embedded model), and a short run with it.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::Golden;
use flops_web::backend::cpu::CpuBackend;
use flops_web::learn::backend::{Backend, Batch};
use flops_web::learn::exact_head::ExactHead;
use flops_web::learn::options::TrainOptions;
use flops_web::model::params::ParamTable;
use flops_web::model::Model;
use pollster::block_on;

/// Tolerance: every element within 1e-4 of the largest |autograd| element of its tensor (f32
/// sums over 8 images against PyTorch's).
#[test]
fn exact_head_gradient_matches_autograd() {
    let g = Golden::open("default_grad_lr.safetensors");
    let pixels = g.f32("pixel_values").1;
    let labels: Vec<usize> = g.i64("labels").1.iter().map(|&l| l as usize).collect();
    let model = Model::embedded_default().unwrap();
    let table = ParamTable::of(&model.net);
    let mut backend = CpuBackend::new(model.net.clone());
    let batch = Batch {
        pixels: &pixels,
        labels: &labels,
    };
    let clean = block_on(backend.clean(&batch)).unwrap();
    let config = TrainOptions::default().to_config(0).unwrap().optimizer;
    let head = ExactHead::new(&table, config, 1.0).unwrap();
    assert_eq!(
        head.tensors.len(),
        4,
        "final LayerNorm and classifier, weight and bias each"
    );
    let params = block_on(backend.read_params(&head.tensors)).unwrap();
    let streams = clean.head_streams.expect("the CPU backend returns the head's inputs");
    let grad = head
        .gradient(backend.host_network(), &params, &streams, &clean.logits, &labels)
        .unwrap();
    let net_params = model.net.params();
    let mut off = 0;
    for &t in &head.tensors {
        let p = net_params[t as usize];
        let truth = g.f32(&format!("grad.{}", p.name)).1;
        let got = &grad[off..off + p.numel()];
        off += p.numel();
        let scale = truth.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&truth).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{:40} max |g| {scale:.3e}, max err {err:.2e}", p.name);
        assert!(
            scale > 0.0 && err <= 1e-4 * scale,
            "{}: max error {err} against {scale}",
            p.name
        );
    }
    assert_eq!(off, grad.len());
}

/// The option runs end to end on the CPU backend (the head moves, every query goes to the
/// block), and is refused where it cannot apply.
#[test]
fn exact_head_trains_and_is_refused_for_head_only_tuning() {
    let (model, train, _) = common::animal_model(1);
    let pre = model.preprocessor.clone();
    let train = flops_web::learn::data::Examples::prepare(&train, &pre).unwrap();
    let options = TrainOptions {
        exact_head: true,
        steps: 3,
        batch: 8,
        queries_per_point: 12,
        ..TrainOptions::preset("best").unwrap()
    };
    let mut t = flops_web::learn::trainer::Trainer::new(
        Box::new(CpuBackend::fast(model.net.clone())),
        options.to_config(0).unwrap(),
        train.clone(),
    )
    .unwrap();
    assert_eq!(t.plan().groups.len(), 6, "the block's six sites; no classifier queries");
    let w = t.backend.table().classifier.weight;
    let before = block_on(t.backend.read_params(&[w])).unwrap();
    for _ in 0..3 {
        let e = block_on(t.step()).unwrap();
        assert!(e.grad_norm.is_finite() && e.grad_norm > 0.0);
        assert_eq!(e.site_allocation.iter().sum::<usize>(), 8 * 12);
    }
    let after = block_on(t.backend.read_params(&[w])).unwrap();
    assert_ne!(before, after, "the head moved");

    let head_only = TrainOptions {
        tuned_layers: 0,
        ..options
    };
    let e = flops_web::learn::trainer::Trainer::new(
        Box::new(CpuBackend::fast(model.net)),
        head_only.to_config(0).unwrap(),
        train,
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("exact head"), "{e}");
}
