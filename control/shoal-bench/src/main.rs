//! `shoal-bench SUITE`: benchmarks that start what they compare against and
//! print one JSON object per line: `{"suite","name","value","unit"}`, plus
//! `"peer","peer_value","ratio"` for a comparison made in the same run
//! (ratio > 1 means Shoal is better).

mod report;
mod store;

use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "shoal-bench",
    about = "Shoal's benchmarks, as JSON lines on stdout"
)]
struct Args {
    /// The suite to run.
    #[arg(value_enum)]
    suite: Suite,
    /// Scale every operation count by this factor (1.0 = the recorded runs).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Suite {
    /// The cluster store: embedded against a real etcd.
    Store,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    match args.suite {
        Suite::Store => store::run(args.scale).await,
    }
}
