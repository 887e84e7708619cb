//! `shoal-bench SUITE`: benchmarks that start what they compare against and
//! print one JSON object per line: `{"suite","name","value","unit"}`, plus
//! `"peer","peer_value","ratio"` for a comparison made in the same run
//! (ratio > 1 means Shoal is better).

mod api;
mod peers;
mod pods;
mod report;
mod runtime;
mod runtime_cri;
mod scheduler;
mod store;

/// mimalloc rather than glibc's malloc: the apiserver allocates per request
/// and per watch event, and glibc's malloc was 15-18% of its CPU time in the
/// scheduler benchmark (BENCHMARKS.md, "scheduler").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Parts of the suite to run, all when none are named (runtime: run,
    /// cri, runc, http; pods: burst, density).
    parts: Vec<String>,
    /// (internal) where the `serve-api` child keeps its data.
    #[arg(long, hide = true)]
    data_dir: Option<std::path::PathBuf>,
    /// (internal) the `serve-api` child's port.
    #[arg(long, hide = true)]
    port: Option<u16>,
    /// (internal) the `serve-api` child's etcd endpoint.
    #[arg(long, hide = true)]
    etcd: Option<String>,
    /// (internal) the `serve-http` child's address.
    #[arg(long, hide = true)]
    addr: Option<std::net::SocketAddr>,
    /// Scale every operation count by this factor (1.0 = the recorded runs).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Suite {
    /// The cluster store: embedded against a real etcd.
    Store,
    /// The apiserver through a real client, on both stores.
    Api,
    /// (internal) the apiserver the `api` suite measures.
    #[value(hide = true)]
    ServeApi,
    /// The Wasm runtime: runs, CRI starts, HTTP functions, against
    /// `wasmtime serve` and `runc`.
    Runtime,
    /// (internal) the HTTP function server the `runtime` suite measures.
    #[value(hide = true)]
    ServeHttp,
    /// The scheduler: pods bound per second on 1,000 hollow nodes.
    Scheduler,
    /// (internal) the apiserver and scheduler the `scheduler` suite measures.
    #[value(hide = true)]
    ServeScheduler,
    /// Pod startup latency (create to Running) on a real `shoal server`
    /// and `shoal node`: bursts of 100 and 1,000 pods, and pods one at a
    /// time with 0, 100 and 1,000 pods already running.
    Pods,
}

fn main() -> anyhow::Result<()> {
    // As the `shoal` binary builds its runtime, so the measured server matches it.
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
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
        Suite::Api => api::run(args.scale).await,
        Suite::ServeApi => {
            let dir = args
                .data_dir
                .ok_or_else(|| anyhow::anyhow!("serve-api needs --data-dir"))?;
            api::serve(&dir, args.port.unwrap_or(0), args.etcd).await
        }
        Suite::Runtime => runtime::run(args.scale, &args.parts).await,
        Suite::ServeHttp => {
            let addr = args
                .addr
                .ok_or_else(|| anyhow::anyhow!("serve-http needs --addr"))?;
            runtime::serve_http(addr).await
        }
        Suite::Scheduler => scheduler::run(args.scale).await,
        Suite::ServeScheduler => {
            let dir = args
                .data_dir
                .ok_or_else(|| anyhow::anyhow!("serve-scheduler needs --data-dir"))?;
            scheduler::serve(&dir, args.port.unwrap_or(0)).await
        }
        Suite::Pods => pods::run(args.scale, &args.parts).await,
    }
}
