//! Command-line parsing and dispatch.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "flops",
    version,
    about = "Fine-tune Vision Transformers with forward passes only (FLOPS)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify images with a model (the embedded MNIST default unless --model is given).
    Predict(crate::predict::PredictArgs),
    /// Fine-tune with forward passes only (embedded model and Animal-Shape data by default).
    Finetune(Box<crate::finetune::FinetuneArgs>),
    /// Evaluate a model on a dataset (JSON on stdout).
    Eval(crate::finetune::EvalArgs),
    /// Benchmarks (JSON on stdout), e.g. `flops bench forward`.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Predict(args) => crate::predict::run(args),
        Command::Finetune(args) => crate::finetune::run_finetune(*args, matches.subcommand_matches("finetune")),
        Command::Eval(args) => crate::finetune::run_eval(args),
        Command::Bench(cmd) => crate::bench::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: the message names the file and the problem.
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
