//! User-facing training options and the one parser from them to a [`TrainConfig`], with the one
//! set of defaults that the CLI (`flops finetune`) and the page (`train(params)`) share.
//! Strings are checked against the allowed values, which the error lists; unknown keys are
//! refused (the page passes a JS object).

use serde::{Deserialize, Serialize};

use super::allocate::AllocatorKind;
use super::error::LearnError;
use super::estimate::EstimatorKind;
use super::optim::{OptimizerConfig, OptimizerKind, Schedule};
use super::trainer::TrainConfig;
use super::tuning::{Perturb, Tuning};

/// Upper bounds of the options, far above any useful run: a value beyond them is a typo or a
/// unit mistake, refused with the range rather than run.
pub const MAX_STEPS: usize = 1_000_000;
pub const MAX_BATCH: usize = 4_096;
pub const MAX_QUERIES_PER_POINT: usize = 4_096;
pub const MAX_LEARNING_RATE: f64 = 10.0;
pub const MAX_NOISE: f64 = 10.0;

/// A serde type error on option `key` (given `value`) in plain words: which option, what it
/// takes, what it got.
fn plain_type_error(key: &str, value: &serde_json::Value, serde: &str) -> String {
    let wants = match serde
        .split("expected ")
        .nth(1)
        .map(|s| s.split(" at line").next().unwrap_or(s))
    {
        Some(t) if t.starts_with("usize") || t.starts_with("u64") || t.starts_with("u32") => "a whole number",
        Some(t) if t.starts_with("f32") || t.starts_with("f64") => "a number",
        Some(t) if t.starts_with("a boolean") || t.starts_with("bool") => "true or false",
        Some(t) if t.starts_with("a string") => "text",
        _ => "another value",
    };
    let got = match value {
        serde_json::Value::Null => "nothing (null, or NaN from JavaScript)".to_string(),
        serde_json::Value::String(s) => format!("the text \"{s}\""),
        other => other.to_string(),
    };
    if serde.starts_with("unknown field") {
        return serde.split(" at line").next().unwrap_or(serde).to_string();
    }
    format!("{key} must be {wants}, got {got}")
}

/// An allowed range in words (`least` of `f64::MIN_POSITIVE`: above 0).
fn range_text(least: f64, most: f64) -> String {
    if least == f64::MIN_POSITIVE {
        format!("above 0 and at most {most}")
    } else {
        format!("from {least} to {most}")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrainOptions {
    /// `lr` (likelihood ratio, activation noise), `spsa` (two-point weight perturbation) or `es`
    /// (one-sided weight perturbation).
    pub estimator: String,
    /// LR only: queries in `(+eps, -eps)` pairs.
    pub antithetic: bool,
    /// `uniform`, `flops`, `neyman` or `bernoulli`.
    pub allocator: String,
    /// The average number of perturbed queries per image (`n_bar`); the step budget is `batch * n_bar`.
    pub queries_per_point: usize,
    pub batch: usize,
    pub steps: usize,
    pub learning_rate: f32,
    /// LR and ES: `sigma`; SPSA: `eps`.
    pub noise_scale: f32,
    /// 0: the classifier head only; K: the last K encoder blocks, the final LayerNorm and the head.
    pub tuned_layers: usize,
    /// LR: `joint` (every tuned site in every query) or `site` (one site per query; the budget
    /// is split over image x site cells, so it must give every cell a query).
    pub perturb: String,
    /// LR: `noiseScale` relative to each site's clean activation RMS.
    pub relative_noise: bool,
    /// The classifier head's learning rate when it should differ from `learningRate` (which
    /// then applies to the tuned blocks and norms).
    pub head_learning_rate: Option<f32>,
    /// LR with tuned blocks: the head's and the final LayerNorm's gradient exactly from the
    /// clean pass ((softmax - onehot) x its input; no backward pass through the network), so
    /// every query goes to the blocks. CPU backend only.
    pub exact_head: bool,
    /// `adam` or `sgd` (momentum 0.9).
    pub optimizer: String,
    /// `cosine` or `constant`.
    pub schedule: String,
    /// Clip the gradient to this global norm; `None`: no clipping.
    pub clip_norm: Option<f32>,
    /// Overrides the caller's seed for this run.
    pub seed: Option<u64>,
    /// Evaluate on the validation set every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Share of each class held out for validation when no validation set was given.
    pub validation_fraction: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            estimator: "lr".into(),
            antithetic: true,
            allocator: "flops".into(),
            queries_per_point: 8,
            batch: 32,
            steps: 200,
            learning_rate: 0.05,
            noise_scale: 0.1,
            tuned_layers: 0,
            perturb: "joint".into(),
            relative_noise: false,
            head_learning_rate: None,
            exact_head: false,
            optimizer: "adam".into(),
            schedule: "cosine".into(),
            clip_norm: Some(5.0),
            seed: None,
            eval_every: 20,
            validation_fraction: 0.2,
        }
    }
}

fn bad(message: String) -> LearnError {
    LearnError::Config { message }
}

impl TrainOptions {
    /// The names [`TrainOptions::preset`] takes.
    pub const PRESETS: &'static [&'static str] = &["quick", "best"];

    /// A named recipe. `quick`: the defaults (the classifier head, about a second natively).
    /// `best`: the best forward-only block-tuning recipe measured (docs/results.md): the last
    /// block and the head, one site per query, one-sided LR at noise 0.01 of each site's
    /// activation RMS, 128 queries per image split evenly over image x site cells, 1,500 steps
    /// of 64 images, Adam at 0.002 (about 10 minutes on one core).
    pub fn preset(name: &str) -> Result<Self, LearnError> {
        match name {
            "quick" => Ok(Self::default()),
            "best" => Ok(Self {
                tuned_layers: 1,
                perturb: "site".into(),
                antithetic: false,
                relative_noise: true,
                noise_scale: 0.01,
                allocator: "uniform".into(),
                batch: 64,
                queries_per_point: 128,
                steps: 1500,
                learning_rate: 0.002,
                eval_every: 100,
                ..Self::default()
            }),
            other => Err(bad(format!(
                "unknown preset `{other}`; one of: {}",
                Self::PRESETS.join(", ")
            ))),
        }
    }

    /// Options from a JSON object (the page's `train(params)`): the preset its `preset` key
    /// names (default `quick`), with its other keys on top. Unknown keys are refused by name.
    pub fn from_json(value: serde_json::Value) -> Result<Self, LearnError> {
        let mut given = match value {
            serde_json::Value::Null => serde_json::Map::new(),
            serde_json::Value::Object(m) => m,
            other => return Err(bad(format!("training options must be an object, got {other}"))),
        };
        let preset = match given.remove("preset") {
            None | Some(serde_json::Value::Null) => "quick".to_string(),
            Some(serde_json::Value::String(s)) => s,
            Some(other) => return Err(bad(format!("preset must be a string, got {other}"))),
        };
        let base = Self::preset(&preset)?;
        let mut merged = match serde_json::to_value(base) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err(bad("preset did not serialise to an object".into())),
        };
        let base = merged.clone();
        merged.extend(given.clone());
        serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| {
            // Name the first key whose value does not fit, in plain words.
            let culprit = given.iter().find_map(|(k, v)| {
                let mut one = base.clone();
                one.insert(k.clone(), v.clone());
                serde_json::from_value::<Self>(serde_json::Value::Object(one))
                    .err()
                    .map(|e| (k, v, e))
            });
            match culprit {
                Some((k, v, e)) => {
                    let message = plain_type_error(k, v, &e.to_string());
                    // Name the allowed range too, where the key has one.
                    let range = Self::default().ranges().into_iter().find(|r| r.0 == k);
                    bad(match (range, message.split_once(", got ")) {
                        (Some((_, _, least, most)), Some((head, got))) => {
                            format!("{head} {}, got {got}", range_text(least, most))
                        }
                        _ => message,
                    })
                }
                None => bad(format!("training options: {e}")),
            }
        })
    }

    /// The allowed range of every numeric option, checked by [`Self::to_config`]: (name,
    /// value, least, most).
    fn ranges(&self) -> [(&'static str, f64, f64, f64); 7] {
        [
            ("steps", self.steps as f64, 1.0, MAX_STEPS as f64),
            ("batch", self.batch as f64, 1.0, MAX_BATCH as f64),
            (
                "queriesPerPoint",
                self.queries_per_point as f64,
                1.0,
                MAX_QUERIES_PER_POINT as f64,
            ),
            (
                "learningRate",
                self.learning_rate as f64,
                f64::MIN_POSITIVE,
                MAX_LEARNING_RATE,
            ),
            (
                "headLearningRate",
                self.head_learning_rate.unwrap_or(self.learning_rate) as f64,
                f64::MIN_POSITIVE,
                MAX_LEARNING_RATE,
            ),
            ("noiseScale", self.noise_scale as f64, f64::MIN_POSITIVE, MAX_NOISE),
            ("evalEvery", self.eval_every as f64, 0.0, MAX_STEPS as f64),
        ]
    }

    /// The names `optimizer` takes.
    pub const OPTIMIZERS: &'static [&'static str] = &["adam", "sgd"];
    /// The names `schedule` takes.
    pub const SCHEDULES: &'static [&'static str] = &["cosine", "constant"];

    /// The run these options describe; `default_seed` where `seed` is not set.
    pub fn to_config(&self, default_seed: u64) -> Result<TrainConfig, LearnError> {
        for (name, v, least, most) in self.ranges() {
            if !(v >= least && v <= most) {
                return Err(bad(format!("{name} must be {}, got {v}", range_text(least, most))));
            }
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(bad(format!("clipNorm must be above 0 (or null: no clipping), got {c}")));
            }
        }
        let estimator = EstimatorKind::parse(&self.estimator, self.noise_scale, self.antithetic)?;
        estimator.validate()?;
        let allocator: AllocatorKind = self.allocator.parse()?;
        let kind = match self.optimizer.as_str() {
            "adam" => OptimizerKind::adam(),
            "sgd" => OptimizerKind::Sgd { momentum: 0.9 },
            other => {
                return Err(bad(format!(
                    "unknown optimizer `{other}`; one of: {}",
                    Self::OPTIMIZERS.join(", ")
                )))
            }
        };
        let schedule = match self.schedule.as_str() {
            "cosine" => Schedule::Cosine,
            "constant" => Schedule::Constant,
            other => {
                return Err(bad(format!(
                    "unknown schedule `{other}`; one of: {}",
                    Self::SCHEDULES.join(", ")
                )))
            }
        };
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(bad(format!(
                "validationFraction must be in [0, 1), got {}",
                self.validation_fraction
            )));
        }
        let optimizer = OptimizerConfig {
            kind,
            lr: self.learning_rate,
            schedule,
            clip_norm: self.clip_norm,
        };
        optimizer.validate()?;
        Ok(TrainConfig {
            estimator,
            allocator,
            queries_per_point: self.queries_per_point,
            batch: self.batch,
            steps: self.steps,
            tuning: if self.tuned_layers == 0 {
                Tuning::Head
            } else {
                Tuning::Last(self.tuned_layers)
            },
            perturb: Perturb::parse(&self.perturb)?,
            relative_noise: self.relative_noise,
            head_lr: self.head_learning_rate,
            exact_head: self.exact_head,
            optimizer,
            seed: self.seed.unwrap_or(default_seed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_bad_values_are_named() {
        let c = TrainOptions::default().to_config(7).unwrap();
        assert_eq!((c.steps, c.batch, c.seed, c.tuning), (200, 32, 7, Tuning::Head));
        let with = |f: fn(&mut TrainOptions)| {
            let mut o = TrainOptions::default();
            f(&mut o);
            o.to_config(0).unwrap_err().to_string()
        };
        assert!(with(|o| o.estimator = "adam".into()).contains("lr, spsa, es"));
        assert!(with(|o| o.optimizer = "lion".into()).contains("adam, sgd"));
        assert!(with(|o| o.steps = 0).contains("steps"));
        assert!(with(|o| o.noise_scale = f32::NAN).contains("noiseScale"));
        assert!(with(|o| o.learning_rate = -1.0).contains("learningRate"));
        let es = TrainOptions {
            estimator: "es".into(),
            ..Default::default()
        };
        assert_eq!(es.to_config(0).unwrap().estimator, EstimatorKind::Es { sigma: 0.1 });
        let e = serde_json::from_str::<TrainOptions>(r#"{"stepz": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("stepz"), "{e}");
    }

    /// Every bad value is named with what the option takes (the page's form and API errors).
    #[test]
    fn bad_values_are_named_with_their_range() {
        let err = |s: &str| {
            TrainOptions::from_json(serde_json::from_str(s).unwrap())
                .and_then(|o| o.to_config(0).map(|_| ()))
                .unwrap_err()
                .to_string()
        };
        for (json, says) in [
            (
                r#"{"steps": -1}"#,
                "steps must be a whole number from 1 to 1000000, got -1",
            ),
            (r#"{"steps": 0}"#, "steps must be from 1 to 1000000, got 0"),
            (r#"{"batch": 0}"#, "batch must be from 1 to 4096, got 0"),
            (
                r#"{"batch": "8"}"#,
                "batch must be a whole number from 1 to 4096, got the text \"8\"",
            ),
            (r#"{"queriesPerPoint": 0}"#, "queriesPerPoint must be from 1"),
            (
                r#"{"learningRate": null}"#,
                "learningRate must be a number above 0 and at most 10, got nothing (null, or NaN",
            ),
            (
                r#"{"learningRate": 1e6}"#,
                "learningRate must be above 0 and at most 10, got 1000000",
            ),
            (r#"{"learningRate": -0.1}"#, "learningRate must be above 0"),
            (r#"{"noiseScale": 0}"#, "noiseScale must be above 0"),
            (r#"{"antithetic": 1}"#, "antithetic must be true or false"),
            (r#"{"stepz": 10}"#, "unknown field `stepz`, expected one of"),
        ] {
            let e = err(json);
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn presets_take_overrides_and_refuse_unknown_keys() {
        let json = |s: &str| TrainOptions::from_json(serde_json::from_str(s).unwrap());
        assert_eq!(json("{}").unwrap(), TrainOptions::default());
        let best = json(r#"{"preset": "best", "steps": 10}"#).unwrap();
        assert_eq!((best.steps, best.perturb.as_str(), best.batch), (10, "site", 64));
        let c = best.to_config(0).unwrap();
        assert_eq!(
            (c.tuning, c.perturb, c.relative_noise),
            (Tuning::Last(1), Perturb::Site, true)
        );
        assert!(json(r#"{"preset": "fast"}"#)
            .unwrap_err()
            .to_string()
            .contains("quick, best"));
        assert!(json(r#"{"preset": "best", "stepz": 1}"#)
            .unwrap_err()
            .to_string()
            .contains("stepz"));
    }
}
