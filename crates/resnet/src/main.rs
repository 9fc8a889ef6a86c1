//! The `resnet` command line: classify images, check models against test data, inspect
//! model files. Each subcommand lives in `cli/<name>.rs`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Run the ONNX model zoo's ResNet image classifiers, in pure Rust.
#[derive(Parser)]
#[command(name = "resnet", version, about, long_about = None, after_help = cli::EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Classify(cli::classify::Args),
    Check(cli::check::Args),
    Inspect(cli::inspect::Args),
    Export(cli::export::Args),
    Models(cli::models::Args),
    Bench(cli::bench::Args),
    Serve(cli::serve::Args),
    Validate(cli::validate::Args),
    Prep(cli::prep::Args),
    Train(cli::train::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(a) => cli::classify::run(a),
        Command::Check(a) => cli::check::run(a),
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::Models(a) => cli::models::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Validate(a) => cli::validate::run(a),
        Command::Prep(a) => cli::prep::run(a),
        Command::Train(a) => cli::train::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cli::one_line(&e));
            ExitCode::from(2)
        }
    }
}
