//! `shoal`: one binary for the whole cluster or any one of its components.

mod cli;
mod image;
mod join;
mod logging;
mod node;
mod scheduler;
mod server;
mod store;
mod up;

/// mimalloc rather than glibc's malloc: the apiserver allocates per request
/// and per watch event, and glibc's malloc was 15-18% of its CPU time in the
/// scheduler benchmark (BENCHMARKS.md, "scheduler").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = logging::init(cli.log_format, &cli.log) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Server(args) => server::run(args, true).await,
        Command::Apiserver(args) => server::run(args, false).await,
        Command::Scheduler(args) => scheduler::run(args).await,
        Command::Cri(args) => cri(args).await,
        Command::Push(args) => image::push(args).await,
        Command::Image(cli::ImageCommand::Import {
            file,
            name,
            data_dir,
        }) => image::import(&file, &name, &data_dir),
        Command::Kubelet(args) => node::kubelet(args).await,
        Command::Node(args) => node::node(args).await,
        other => not_yet(other.component()),
    }
}

/// The CRI runtime alone, in its own process: the kubelet talks to it over
/// the socket, so restarting the kubelet stops no container.
async fn cri(args: cli::CriArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.resolve();
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    let mut config = cri::Config::new(&data_dir);
    if let Some(socket) = args.socket {
        config.socket = socket;
    }
    let server = cri::CriServer::build(config)
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
    let shutdown = shutdown_signal()?;
    eprintln!(
        "shoal cri is serving on unix://{}",
        server.socket().display()
    );
    server
        .serve(async move {
            shutdown.await;
            tracing::info!("stopping");
        })
        .await
        .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
}

/// An error and its sources, joined as `anyhow`'s `{:#}` would.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed before this
/// returns, so a signal sent as soon as the server says it is up is caught.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn not_yet(component: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "`shoal {component}` is not available in this build yet: its component has not been written. \
         `shoal up` runs a whole cluster today."
    )
}
