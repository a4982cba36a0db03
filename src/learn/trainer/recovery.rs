//! Keeping a run safe: checkpoints of the tuned tensors, moving a run to another backend from
//! its last checkpoint (a lost GPU device), and the [`DivergenceGuard`] that stops a runaway
//! run at its last good weights.

use super::{exact_head_unsupported, Trainer};
use crate::learn::backend::Backend;
use crate::learn::error::LearnError;

/// Stops a diverging run: when the moving average of the batch loss (weight `1 - decay` on
/// the newest step) passes `factor` times the first step's loss plus `margin`, the step is
/// refused before its update and the tuned tensors go back to the last checkpoint
/// ([`LearnError::Diverged`]). The margin keeps a run that starts near zero loss from tripping
/// on noise.
#[derive(Debug, Clone, Copy)]
pub struct DivergenceGuard {
    pub factor: f32,
    pub margin: f32,
    pub decay: f32,
}

impl Default for DivergenceGuard {
    fn default() -> Self {
        // Far past the start: an aggressive but sane rate (Adam at 0.3 on the head) spikes a
        // batch of 8 to ~14x its starting loss for a few steps and recovers; a runaway one
        // (learning rate 10) reaches 200x within two steps.
        Self {
            factor: 20.0,
            margin: 5.0,
            decay: 0.8,
        }
    }
}

impl Trainer {
    /// Keeps the tuned tensors as they are now (read back from a device backend) as the
    /// weights [`Trainer::move_to`] continues from. Returns the step they are of.
    pub async fn checkpoint(&mut self) -> Result<usize, LearnError> {
        let params = self.backend.read_params(&self.tuned).await?;
        self.last_good = (self.step, params);
        Ok(self.step)
    }

    /// Whether weights with this batch loss are worth keeping: under half the guard's limit
    /// (always without a guard).
    fn loss_is_good(&self, loss: f32) -> bool {
        match (self.guard, self.loss_start) {
            (Some(g), Some(start)) => loss <= 0.5 * (g.factor * start + g.margin),
            _ => true,
        }
    }

    /// The step of the weights kept by the last [`Trainer::checkpoint`] (0: the start).
    pub fn checkpoint_step(&self) -> usize {
        self.last_good.0
    }

    /// Moves the run onto `backend` (the CPU after the GPU device was lost), which must hold
    /// the same network (its tuned tensors may be anything: they are replaced). The tuned
    /// tensors are set to those of the last checkpoint; the step count, the batch order, the
    /// allocator's state and the schedule go on; the optimiser's moments start over (a device
    /// backend kept its own, now gone). Returns the checkpoint's step: the updates of the
    /// steps after it are lost. On an error nothing changes.
    pub fn move_to(&mut self, mut backend: Box<dyn Backend>) -> Result<usize, LearnError> {
        let (old, new) = (self.backend.host_network(), backend.host_network());
        let layers = new.vit.layers.len();
        let same = old.config.num_labels() == new.config.num_labels()
            && old.params().len() == new.params().len()
            && old
                .params()
                .iter()
                .zip(new.params().iter())
                .all(|(a, b)| a.shape == b.shape);
        if !same {
            return Err(LearnError::Config {
                message: format!(
                    "the {} backend holds a different network; a run moves only to the same one",
                    backend.name()
                ),
            });
        }
        if self.head.is_some() && !backend.returns_head_streams() {
            return Err(exact_head_unsupported(backend.name()));
        }
        backend.write_params(&self.tuned, &self.last_good.1)?;
        backend.freeze_below(self.config.tuning.first_tuned_block(layers));
        self.restart_moments();
        // The new backend computes every image's frozen prefix again.
        self.prefixed.iter_mut().for_each(|p| *p = false);
        self.backend = backend;
        Ok(self.last_good.0)
    }

    /// Forgets the optimisers' moments: they belong to weights the run left behind.
    fn restart_moments(&mut self) {
        self.optimizer.reset();
        if let Some(head) = &mut self.head {
            head.reset_optimizer();
        }
    }

    /// The guard's check of a step's batch `loss` (measured before its update): past the limit
    /// the tuned tensors go back to the last checkpoint and the step is refused.
    pub(super) fn watch_loss(&mut self, loss: f32) -> Result<(), LearnError> {
        let Some(g) = self.guard else {
            return Ok(());
        };
        let start = *self.loss_start.get_or_insert(loss);
        let average = if self.step == 0 {
            loss
        } else {
            g.decay * self.loss_average + (1.0 - g.decay) * loss
        };
        let limit = g.factor * start + g.margin;
        // A NaN average trips it too.
        if average.is_nan() || average > limit {
            let params = self.last_good.1.clone();
            self.backend.write_params(&self.tuned, &params)?;
            self.restart_moments();
            return Err(LearnError::Diverged {
                step: self.step + 1,
                loss,
                start,
                kept: self.last_good.0,
            });
        }
        self.loss_average = average;
        Ok(())
    }

    /// A [`Trainer::checkpoint`] of the weights a step starts from, every
    /// `checkpoint_every` steps, when the loss just measured on them is sane.
    pub(super) async fn checkpoint_if_due(&mut self, loss: f32) -> Result<(), LearnError> {
        if self.checkpoint_every > 0
            && self.step > 0
            && self.step.is_multiple_of(self.checkpoint_every)
            && self.loss_is_good(loss)
        {
            self.checkpoint().await?;
        }
        Ok(())
    }
}
