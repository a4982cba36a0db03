//! WGSL sources: one file per kernel family in `shaders/`, embedded with `include_str!`.
//! WGSL has no include, so [`Kernel::source`] concatenates the shared snippets (`rng.wgsl`,
//! `perturb.wgsl`) in front of the kernels that need them; `tests/shaders_naga.rs` validates
//! exactly these assembled sources.

const RNG: &str = include_str!("../../shaders/rng.wgsl");
const PERTURB: &str = include_str!("../../shaders/perturb.wgsl");

/// A kernel family (one WGSL file with one or more entry points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    Matmul,
    LayerNorm,
    Attention,
    Embed,
    Elementwise,
    Loss,
    RngFill,
    Grad,
    Optim,
}

impl Kernel {
    pub const ALL: [Kernel; 9] = [
        Kernel::Matmul,
        Kernel::LayerNorm,
        Kernel::Attention,
        Kernel::Embed,
        Kernel::Elementwise,
        Kernel::Loss,
        Kernel::RngFill,
        Kernel::Grad,
        Kernel::Optim,
    ];

    /// The file in `shaders/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Kernel::Matmul => "matmul.wgsl",
            Kernel::LayerNorm => "layer_norm.wgsl",
            Kernel::Attention => "attention.wgsl",
            Kernel::Embed => "embed.wgsl",
            Kernel::Elementwise => "elementwise.wgsl",
            Kernel::Loss => "loss.wgsl",
            Kernel::RngFill => "rng_fill.wgsl",
            Kernel::Grad => "grad.wgsl",
            Kernel::Optim => "optim.wgsl",
        }
    }

    /// The snippets (no entry points, no bindings of their own except `perturb.wgsl`'s table)
    /// that are concatenated in front of kernels; listed so tests can account for every file.
    pub const SNIPPETS: [&'static str; 2] = ["rng.wgsl", "perturb.wgsl"];

    fn body(self) -> &'static str {
        match self {
            Kernel::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Kernel::LayerNorm => include_str!("../../shaders/layer_norm.wgsl"),
            Kernel::Attention => include_str!("../../shaders/attention.wgsl"),
            Kernel::Embed => include_str!("../../shaders/embed.wgsl"),
            Kernel::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Kernel::Loss => include_str!("../../shaders/loss.wgsl"),
            Kernel::RngFill => include_str!("../../shaders/rng_fill.wgsl"),
            Kernel::Grad => include_str!("../../shaders/grad.wgsl"),
            Kernel::Optim => include_str!("../../shaders/optim.wgsl"),
        }
    }

    fn needs_rng(self) -> bool {
        matches!(
            self,
            Kernel::Matmul | Kernel::LayerNorm | Kernel::Loss | Kernel::RngFill | Kernel::Grad
        )
    }

    fn needs_perturb(self) -> bool {
        matches!(self, Kernel::Matmul | Kernel::LayerNorm | Kernel::Loss)
    }

    /// The complete WGSL module: snippets, then the kernel's file.
    pub fn source(self) -> String {
        let mut s = String::new();
        if self.needs_rng() {
            s.push_str(RNG);
            s.push('\n');
        }
        if self.needs_perturb() {
            s.push_str(PERTURB);
            s.push('\n');
        }
        s.push_str(self.body());
        s
    }

    /// Entry points of the module.
    pub fn entry_points(self) -> &'static [&'static str] {
        match self {
            Kernel::Embed => &["im2col", "assemble"],
            Kernel::Elementwise => &["add", "gather"],
            Kernel::RngFill => &["raw", "normal"],
            Kernel::Grad => &["lr_noise", "lr_noise_sum", "outer", "bias", "through_norm", "spsa"],
            Kernel::Optim => &["sumsq_partial", "sumsq_final", "update"],
            _ => &["main"],
        }
    }

    /// Override constants the module declares (all booleans here).
    pub fn overrides(self) -> &'static [&'static str] {
        match self {
            Kernel::Matmul => &["HAS_BIAS", "GELU", "LR_NOISE", "WEIGHT_PERT"],
            Kernel::LayerNorm => &["WEIGHT_PERT"],
            Kernel::Optim => &["ADAM"],
            _ => &[],
        }
    }
}
