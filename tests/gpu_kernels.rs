//! Every kernel against the CPU reference on seeded random shapes, including sizes that are
//! not multiples of the workgroup or tile sizes. Runs on whatever adapter wgpu finds natively
//! (lavapipe here); no adapter is a failure, not a skip.
//!
//! Tolerances (|err| <= atol + rtol |ref|): matmul 1e-5 + 1e-5 (f32 accumulation order),
//! GELU epilogue 2e-5 + 1e-5 (erf approximation, |err| < 1.5e-7), LayerNorm 1e-5 + 1e-5 (f32
//! vs f64 statistics), attention 1e-5 + 1e-5, gather/add exact, RNG u32 words bit-identical,
//! normals 2e-6 absolute (portable polynomial ln/sin/cos on both sides; FMA contraction).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::OnceLock;

use common::assert_close;
use flops_web::gpu::ops::{self, Matmul, PertView, NONE};
use flops_web::gpu::readback::read_u32;
use flops_web::gpu::{GpuContext, GpuOptions, GpuTensor};
use flops_web::model::nn::{gelu, softmax_inplace, Kernels, LayerNorm, Linear, Param};
use flops_web::model::ParamTable;
use flops_web::noise::{philox4x32_10, Stream};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new_blocking(&GpuOptions { backends_from_env: true, ..Default::default() }).unwrap_or_else(|e| {
            panic!("GPU tests need an adapter: {e}\nHINT: run scripts/setup.sh (installs lavapipe: mesa-vulkan-drivers libvulkan1)")
        })
    })
}

fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn param(name: &str, shape: &[usize], data: Vec<f32>) -> Param {
    Param {
        name: name.into(),
        shape: shape.to_vec(),
        data,
    }
}

fn upload(data: &[f32], shape: &[usize]) -> GpuTensor {
    GpuTensor::from_slice(ctx(), "test", shape, data).expect("upload")
}

fn run(op: ops::Op, out: &GpuTensor) -> Vec<f32> {
    ops::submit(ctx(), &[op]).expect("submit");
    out.read_blocking(ctx()).expect("read back")
}

#[test]
fn matmul_matches_linear_on_odd_shapes() {
    let mut rng = StdRng::seed_from_u64(1);
    let pert = PertView::unused(ctx()).unwrap();
    for &(rows, tokens, k, n, bias, act) in &[
        (1, 1, 1, 1, true, false),
        (3, 7, 50, 19, true, false),
        (2, 35, 33, 65, false, false),
        (1, 70, 48, 100, true, true),
        (4, 17, 100, 48, true, false),
    ] {
        let m = rows * tokens;
        let x = random(&mut rng, m * k);
        let lin = Linear {
            weight: param("w", &[n, k], random(&mut rng, n * k)),
            bias: bias.then(|| param("b", &[n], random(&mut rng, n))),
            kernels: Default::default(),
        };
        let mut want = lin.forward(&x);
        if act {
            want.iter_mut().for_each(|v| *v = gelu(*v));
        }
        let (gx, gw, gy) = (
            upload(&x, &[m, k]),
            upload(&lin.weight.data, &[n, k]),
            GpuTensor::zeros(ctx(), "y", &[m, n]).unwrap(),
        );
        let gb = lin.bias.as_ref().map(|b| upload(&b.data, &[n]));
        let op = ops::matmul(&Matmul {
            x: &gx,
            rows,
            tokens,
            weight: &gw,
            bias: gb.as_ref(),
            y: &gy,
            tensor_ids: (NONE, NONE),
            gelu: act,
            lr: None,
            weight_pert: None,
            row_base: 0,
            pert: &pert,
        })
        .expect("matmul op");
        let atol = if act { 2e-5 } else { 1e-5 };
        assert_close(
            &format!("matmul {m}x{k} * {n}x{k}^T bias={bias} gelu={act}"),
            &run(op, &gy),
            &want,
            atol,
            1e-5,
        );
    }
}

#[test]
fn matmul_rejects_mismatched_shapes() {
    let pert = PertView::unused(ctx()).unwrap();
    let (x, w, y) = (
        upload(&[0.0; 12], &[4, 3]),
        upload(&[0.0; 8], &[2, 4]),
        GpuTensor::zeros(ctx(), "y", &[4, 2]).unwrap(),
    );
    let err = ops::matmul(&Matmul {
        x: &x,
        rows: 4,
        tokens: 1,
        weight: &w,
        bias: None,
        y: &y,
        tensor_ids: (NONE, NONE),
        gelu: false,
        lr: None,
        weight_pert: None,
        row_base: 0,
        pert: &pert,
    })
    .unwrap_err();
    assert!(err.to_string().contains("x has shape [4, 3]"), "{err}");
}

#[test]
fn layer_norm_matches_reference() {
    let mut rng = StdRng::seed_from_u64(2);
    let pert = PertView::unused(ctx()).unwrap();
    for &(rows, tokens, d, eps) in &[
        (1, 1, 1, 1e-12),
        (2, 5, 50, 1e-6),
        (3, 3, 130, 1e-12),
        (1, 65, 48, 1e-5),
    ] {
        let m = rows * tokens;
        let x: Vec<f32> = random(&mut rng, m * d).iter().map(|v| 3.0 * v + 0.5).collect();
        let ln = LayerNorm {
            weight: param("g", &[d], random(&mut rng, d)),
            bias: param("b", &[d], random(&mut rng, d)),
            eps,
            kernels: Kernels::Reference,
        };
        let want = ln.forward(&x);
        let (gx, gy) = (upload(&x, &[m, d]), GpuTensor::zeros(ctx(), "y", &[m, d]).unwrap());
        let (g, b) = (upload(&ln.weight.data, &[d]), upload(&ln.bias.data, &[d]));
        let op = ops::layer_norm(&gx, rows, tokens, &g, &b, eps, &gy, None, 0, &pert).expect("op");
        assert_close(&format!("layer_norm {m}x{d}"), &run(op, &gy), &want, 1e-5, 1e-5);
    }
}

fn attention_ref(q: &[f32], k: &[f32], v: &[f32], rows: usize, t: usize, d: usize, heads: usize) -> Vec<f32> {
    let hd = d / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0.0; rows * t * d];
    for r in 0..rows {
        let base = r * t * d;
        for h in 0..heads {
            for i in 0..t {
                let mut s: Vec<f32> = (0..t)
                    .map(|j| {
                        (0..hd)
                            .map(|c| q[base + i * d + h * hd + c] * k[base + j * d + h * hd + c])
                            .sum::<f32>()
                            * scale
                    })
                    .collect();
                softmax_inplace(&mut s);
                for c in 0..hd {
                    out[base + i * d + h * hd + c] = (0..t).map(|j| s[j] * v[base + j * d + h * hd + c]).sum();
                }
            }
        }
    }
    out
}

#[test]
fn attention_matches_reference() {
    let mut rng = StdRng::seed_from_u64(3);
    for &(rows, t, d, heads) in &[
        (1, 1, 4, 1),
        (2, 17, 12, 3),
        (1, 70, 48, 3),
        (3, 5, 130, 2),
        (1, 197, 128, 1),
    ] {
        let n = rows * t * d;
        let (q, k, v) = (random(&mut rng, n), random(&mut rng, n), random(&mut rng, n));
        let want = attention_ref(&q, &k, &v, rows, t, d, heads);
        let shape = [rows, t, d];
        let (gq, gk, gv, go) = (
            upload(&q, &shape),
            upload(&k, &shape),
            upload(&v, &shape),
            GpuTensor::zeros(ctx(), "o", &shape).unwrap(),
        );
        let op = ops::attention(&gq, &gk, &gv, &go, rows, t, d, heads).expect("op");
        assert_close(
            &format!("attention rows={rows} T={t} D={d} H={heads}"),
            &run(op, &go),
            &want,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn gather_and_add_are_exact() {
    let mut rng = StdRng::seed_from_u64(4);
    let (rows_src, stride, width, offset) = (5, 30, 7, 11);
    let src = random(&mut rng, rows_src * stride);
    let idx = [4u32, 0, 4, 2, 1, 3, 3];
    let want: Vec<f32> = idx
        .iter()
        .flat_map(|&i| src[i as usize * stride + offset..][..width].to_vec())
        .collect();
    let gsrc = upload(&src, &[rows_src, stride]);
    let gidx = wgpu::util::DeviceExt::create_buffer_init(
        &ctx().device,
        &wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&idx),
            usage: wgpu::BufferUsages::STORAGE,
        },
    );
    let dst = GpuTensor::zeros(ctx(), "dst", &[idx.len(), width]).unwrap();
    let got = run(
        ops::gather(&gsrc, &gidx, idx.len(), width, stride, offset, &dst).unwrap(),
        &dst,
    );
    assert_eq!(got, want);

    let (a, b) = (random(&mut rng, 131), random(&mut rng, 131));
    let (ga, gb) = (upload(&a, &[131]), upload(&b, &[131]));
    let got = run(ops::add(&ga, &gb).unwrap(), &ga);
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(got, want);
}

#[test]
fn rng_words_are_bit_identical_to_noise_rs() {
    let streams = [
        Stream::lr(0, 0, ParamTable::site_id(flops_web::model::LinearSite::Query(0)), 0),
        Stream::lr(
            0xDEAD_BEEF_0123_4567,
            9,
            ParamTable::site_id(flops_web::model::LinearSite::Classifier),
            1234,
        ),
        Stream::weight(u64::MAX, u32::MAX, 77, 3),
    ];
    for s in &streams {
        for &(start, count) in &[(0u32, 1usize), (5, 130), (u32::MAX - 70, 70)] {
            let out = GpuTensor::zeros(ctx(), "raw", &[count * 4]).unwrap();
            ops::submit(ctx(), &[ops::rng_raw(s, start, count, &out.buffer).unwrap()]).unwrap();
            let got = pollster::block_on(read_u32(ctx(), &out.buffer, count * 4)).unwrap();
            let want: Vec<u32> = (0..count as u32)
                .flat_map(|i| philox4x32_10([start.wrapping_add(i), s.sub, s.step, s.tag], s.key))
                .collect();
            assert_eq!(got, want, "{s:?} blocks {start}..+{count}");
        }
    }
}

#[test]
fn rng_normals_match_noise_rs_and_have_unit_moments() {
    let s = Stream::weight(42, 1, 3, 7);
    let n = 1 << 16;
    let out = GpuTensor::zeros(ctx(), "normals", &[n]).unwrap();
    let got = run(ops::rng_normal(&s, 3, &out).unwrap(), &out);
    let mut want = vec![0.0; n];
    s.fill(3, &mut want);
    assert_close("rng normals vs noise.rs", &got, &want, 2e-6, 0.0);
    let mean = got.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let var = got.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    // Standard errors at n = 65536: mean 0.0039, variance 0.0055; bounds are 5 sigma.
    assert!(mean.abs() < 0.02, "mean {mean}");
    assert!((var - 1.0).abs() < 0.028, "variance {var}");
}

#[test]
fn pipelines_are_cached() {
    let pert = PertView::unused(ctx()).unwrap();
    let (g, b) = (upload(&[1.0; 8], &[8]), upload(&[0.0; 8], &[8]));
    let (x, y) = (
        upload(&[0.5; 16], &[2, 8]),
        GpuTensor::zeros(ctx(), "y", &[2, 8]).unwrap(),
    );
    let op = || ops::layer_norm(&x, 2, 1, &g, &b, 1e-6, &y, None, 0, &pert).unwrap();
    ops::submit(ctx(), &[op()]).unwrap();
    let before = ctx().cached_pipelines();
    ops::submit(ctx(), &[op(), op()]).unwrap();
    assert_eq!(ctx().cached_pipelines(), before, "the same key compiled twice");
}

#[test]
fn patch_embedding_ops_match_reference() {
    // Odd geometry: 2 channels, 12 x 20 pixels, 4 x 5 patches (3 x 4 grid), 3 images, D = 7.
    let (b, c, h, w, ph, pw, d) = (3usize, 2usize, 12usize, 20usize, 4usize, 5usize, 7usize);
    let (gh, gw) = (h / ph, w / pw);
    let np = gh * gw;
    let mut rng = StdRng::seed_from_u64(5);
    let pixels = random(&mut rng, b * c * h * w);
    let mut want_patches = Vec::new();
    for img in pixels.chunks_exact(c * h * w) {
        for gy in 0..gh {
            for gx in 0..gw {
                for ch in 0..c {
                    for dy in 0..ph {
                        for dx in 0..pw {
                            want_patches.push(img[(ch * h + gy * ph + dy) * w + gx * pw + dx]);
                        }
                    }
                }
            }
        }
    }
    let p = ops::EmbedParams {
        images: b as u32,
        channels: c as u32,
        height: h as u32,
        width: w as u32,
        ph: ph as u32,
        pw: pw as u32,
        grid_w: gw as u32,
        patches: np as u32,
        d: d as u32,
        _pad: [0; 3],
    };
    let gp = upload(&pixels, &[b, c, h, w]);
    let patches = GpuTensor::zeros(ctx(), "patches", &[b * np, c * ph * pw]).unwrap();
    assert_eq!(
        run(ops::im2col(&p, &gp, &patches).unwrap(), &patches),
        want_patches,
        "im2col"
    );

    let (proj, cls, pos) = (
        random(&mut rng, b * np * d),
        random(&mut rng, d),
        random(&mut rng, (np + 1) * d),
    );
    let mut want = Vec::new();
    for img in 0..b {
        for t in 0..=np {
            for j in 0..d {
                let v = if t == 0 {
                    cls[j]
                } else {
                    proj[(img * np + t - 1) * d + j]
                };
                want.push(v + pos[t * d + j]);
            }
        }
    }
    let hidden = GpuTensor::zeros(ctx(), "hidden", &[b, np + 1, d]).unwrap();
    let op = ops::assemble(
        &p,
        &upload(&proj, &[b * np, d]),
        &upload(&cls, &[d]),
        &upload(&pos, &[np + 1, d]),
        &hidden,
    );
    assert_eq!(run(op.unwrap(), &hidden), want, "assemble");
}
