//! Training parameters as JS passes them (`train(params)`), validated into a [`TrainConfig`].
//! Strings are checked against the allowed values, which the error lists.

use serde::Deserialize;

use crate::learn::estimate::EstimatorKind;
use crate::learn::optim::{OptimizerConfig, OptimizerKind, Schedule};
use crate::learn::trainer::TrainConfig;
use crate::learn::tuning::Tuning;
use crate::learn::{AllocatorKind, LearnError};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrainParams {
    /// `lr` (likelihood ratio, activation noise) or `spsa` (two-point weight perturbation).
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
    /// LR: `sigma`; SPSA: `eps`.
    pub noise_scale: f32,
    /// 0: the classifier head only; K: the last K encoder blocks, the final LayerNorm and the head.
    pub tuned_layers: usize,
    /// `adam` or `sgd` (momentum 0.9).
    pub optimizer: String,
    /// `cosine` or `constant`.
    pub schedule: String,
    pub clip_norm: Option<f32>,
    /// Overrides the learner's seed (`setSeed`) for this run.
    pub seed: Option<u64>,
    /// Evaluate on the validation set every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Share of each class held out for validation when no validation set was given.
    pub validation_fraction: f64,
}

impl Default for TrainParams {
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

impl TrainParams {
    pub fn to_config(&self, default_seed: u64) -> Result<TrainConfig, LearnError> {
        let estimator = match self.estimator.as_str() {
            "lr" => EstimatorKind::Lr {
                sigma: self.noise_scale,
                antithetic: self.antithetic,
            },
            "spsa" => EstimatorKind::Spsa { eps: self.noise_scale },
            other => return Err(bad(format!("unknown estimator `{other}`; one of: lr, spsa"))),
        };
        let allocator: AllocatorKind = self.allocator.parse()?;
        let kind = match self.optimizer.as_str() {
            "adam" => OptimizerKind::adam(),
            "sgd" => OptimizerKind::Sgd { momentum: 0.9 },
            other => return Err(bad(format!("unknown optimizer `{other}`; one of: adam, sgd"))),
        };
        let schedule = match self.schedule.as_str() {
            "cosine" => Schedule::Cosine,
            "constant" => Schedule::Constant,
            other => return Err(bad(format!("unknown schedule `{other}`; one of: cosine, constant"))),
        };
        if self.steps == 0 {
            return Err(bad("steps must be at least 1".into()));
        }
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
            optimizer,
            seed: self.seed.unwrap_or(default_seed),
        })
    }
}
