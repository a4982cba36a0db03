//! `flops predict`: classify images.

use std::path::PathBuf;

use clap::Args;
use flops_web::model::nn::softmax;
use flops_web::model::Image;
use serde::Serialize;

use crate::model_dir::{load_model, read_file, CliError};

#[derive(Args)]
pub struct PredictArgs {
    /// Model folder (config.json, model.safetensors, preprocessor_config.json); default: embedded.
    #[arg(long)]
    model: Option<PathBuf>,
    /// How many of the most likely labels to show per image.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    top: u32,
    /// Print exactly one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Images (PNG, JPEG, BMP, GIF, WebP).
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Output {
    labels: Vec<String>,
    predictions: Vec<Prediction>,
}

#[derive(Serialize)]
struct Prediction {
    image: String,
    logits: Vec<f32>,
    top: Vec<Top>,
}

#[derive(Serialize)]
struct Top {
    label: String,
    prob: f32,
}

pub fn run(args: PredictArgs) -> Result<(), CliError> {
    let model = load_model(args.model.as_deref())?;
    let labels = model.labels();
    // Decode everything first so that a bad image fails the run before any output.
    let mut predictions = Vec::with_capacity(args.images.len());
    for path in &args.images {
        let image = Image::decode(&read_file(path)?).map_err(|source| CliError::Model {
            path: path.clone(),
            source,
        })?;
        let logits = model.logits(&image).map_err(|source| CliError::Model {
            path: path.clone(),
            source,
        })?;
        let probs = softmax(&logits);
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let top = order
            .iter()
            .take(args.top as usize)
            .map(|&i| Top {
                label: labels[i].clone(),
                prob: probs[i],
            })
            .collect();
        predictions.push(Prediction {
            image: path.display().to_string(),
            logits,
            top,
        });
    }
    if args.json {
        let out = Output { labels, predictions };
        println!(
            "{}",
            serde_json::to_string(&out).map_err(|e| CliError::Other(e.to_string()))?
        );
    } else {
        for p in &predictions {
            let tops: Vec<String> = p
                .top
                .iter()
                .map(|t| format!("{} ({:.1}%)", t.label, 100.0 * t.prob))
                .collect();
            println!("{}: {}", p.image, tops.join(", "));
        }
    }
    Ok(())
}
