//! Preprocessing against HF `ViTImageProcessor` (PIL backend) outputs in the fixtures.
//!
//! Resizing uses the `image` crate's filters, not PIL's, so resized pixels may differ by a few
//! 8-bit levels; stated tolerances: resized bytes within 1 level (mean within 0.25), normalised
//! pixels within 1/255/std (measured: max 1 level, mean 0.18). Without resizing the pipeline must match to 1e-6.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{assert_close, fixture, load_dir, Golden};
use flops_web::model::{Image, Model};

#[test]
fn no_resize_path_matches_exactly() {
    let model = Model::embedded_default().unwrap();
    let golden = Golden::open("default_golden.safetensors");
    let (shape, images) = golden.u8("images_u8");
    let (_, want) = golden.f32("pixel_values");
    let (h, w) = (shape[1], shape[2]);
    let mut got = Vec::new();
    for img in images.chunks_exact(h * w) {
        got.extend(
            model
                .preprocessor
                .apply(&Image::from_raw(w as u32, h as u32, 1, img.to_vec()).unwrap())
                .unwrap(),
        );
    }
    assert_close("default pixel_values", &got, &want, 1e-6, 0.0);
}

#[test]
fn resize_is_close_to_pil_bilinear() {
    let model = load_dir(&fixture("tiny_vit_hf"));
    let golden = Golden::open("tiny_vit_golden.safetensors");
    let (shape, images) = golden.u8("pre_images_u8");
    let (_, resized_want) = golden.u8("pre_resized_u8");
    let (_, pixels_want) = golden.f32("pre_pixel_values");
    let (h, w) = (shape[1], shape[2]);
    let mut resized = Vec::new();
    let mut pixels = Vec::new();
    for img in images.chunks_exact(h * w * 3) {
        let image = Image::from_raw(w as u32, h as u32, 3, img.to_vec()).unwrap();
        resized.extend(model.preprocessor.prepare(&image).unwrap().data);
        pixels.extend(model.preprocessor.apply(&image).unwrap());
    }
    let diffs: Vec<i32> = resized
        .iter()
        .zip(&resized_want)
        .map(|(&a, &b)| (a as i32 - b as i32).abs())
        .collect();
    let max = *diffs.iter().max().unwrap();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    eprintln!("resize vs PIL: max {max} levels, mean {mean:.3}");
    assert!(
        max <= 1 && mean <= 0.25,
        "resize differs from PIL bilinear: max {max} levels, mean {mean:.3}"
    );
    // Smallest std is 0.2: 1 level -> 1/255/0.2.
    assert_close(
        "tiny pre_pixel_values",
        &pixels,
        &pixels_want,
        1.0 / 255.0 / 0.2 + 1e-5,
        0.0,
    );
}

#[test]
fn gray_images_are_repeated_to_rgb() {
    let model = load_dir(&fixture("tiny_vit_hf"));
    let golden = Golden::open("tiny_vit_golden.safetensors");
    let (shape, images) = golden.u8("pre_gray_u8");
    let (_, want) = golden.f32("pre_gray_pixel_values");
    let (h, w) = (shape[1], shape[2]);
    let got: Vec<f32> = images
        .chunks_exact(h * w)
        .flat_map(|img| {
            model
                .preprocessor
                .apply(&Image::from_raw(w as u32, h as u32, 1, img.to_vec()).unwrap())
                .unwrap()
        })
        .collect();
    assert_close("tiny pre_gray_pixel_values", &got, &want, 1.0 / 255.0 / 0.2 + 1e-5, 0.0);
}

#[test]
fn rgb_to_gray_uses_pil_weights() {
    let img = Image::from_raw(2, 1, 3, vec![255, 0, 0, 10, 200, 30]).unwrap();
    // PIL: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
    assert_eq!(img.to_channels(1).unwrap().data, vec![76, 124]);
}

#[test]
fn bad_images_are_errors() {
    assert!(Image::decode(b"definitely not an image")
        .unwrap_err()
        .to_string()
        .contains("cannot decode"));
    assert!(Image::from_raw(2, 2, 3, vec![0; 5])
        .unwrap_err()
        .to_string()
        .contains("needs 12 bytes"));
    assert!(Image::from_raw(0, 2, 1, vec![]).is_err());
    assert!(Image::from_raw(1, 1, 2, vec![0, 0])
        .unwrap_err()
        .to_string()
        .contains("2 channels"));
}
