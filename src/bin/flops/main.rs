//! `flops`: the native command-line front end of flops-web.
//!
//! Native only. Cargo builds every binary of the package for `cargo test --target
//! wasm32-unknown-unknown`, so on wasm32 this is an empty stub; the browser's front end is the
//! wasm API.

#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod cli;
#[cfg(not(target_arch = "wasm32"))]
mod finetune;
#[cfg(not(target_arch = "wasm32"))]
mod learn_bench;
#[cfg(not(target_arch = "wasm32"))]
mod model_dir;
#[cfg(not(target_arch = "wasm32"))]
mod predict;
#[cfg(not(target_arch = "wasm32"))]
mod speed;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
