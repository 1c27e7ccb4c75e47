//! `nshap serve`: a headless job server for Neuron Shapley runs.
//!
//! An HTTP JSON API (axum) over a SQLite job store (WAL). Each job runs as a child process of
//! the `nshap` binary itself (`nshap run ... --out <data-dir>/jobs/<id>`), which checkpoints
//! its state; a server killed with `kill -9` resumes its jobs from those checkpoints when it
//! starts again. See docs/server.md.

mod api;
mod db;
mod jobs;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use api::OPENAPI;

/// Arguments of `nshap serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
    /// Where the database, uploaded blobs and job directories live.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// Jobs running at once.
    #[arg(long, default_value_t = 1)]
    pub max_jobs: usize,
    /// Largest upload (the whole multipart body), in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_upload_bytes: u64,
    /// Longest a non-streaming request may take, in seconds.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Seconds to wait for running jobs to checkpoint on SIGTERM before killing them.
    #[arg(long, default_value_t = 60)]
    pub shutdown_grace_secs: u64,
}

#[derive(Subcommand, Debug)]
pub enum ServeCommand {
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token for tenant NAME (created if new); prints the token once.
    Create {
        /// Tenant name: letters, digits, '_', '-', '.'.
        #[arg(long)]
        name: String,
    },
}

pub fn main(args: ServeArgs) -> Result<()> {
    let Some(data_dir) = args.data_dir.clone() else {
        bail!("--data-dir is required");
    };
    match &args.command {
        Some(ServeCommand::Token(TokenCommand::Create { name })) => token_create(&data_dir, name),
        None => serve(args, data_dir),
    }
}

fn token_create(data_dir: &std::path::Path, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        bail!("--name: expected 1 to 64 letters, digits, '_', '-' or '.', found {name:?}");
    }
    let db = db::Db::open(data_dir)?;
    let token = format!("nshap_{}", api::random_hex(32));
    db.add_token(name, &api::sha256_hex(token.as_bytes()))?;
    eprintln!(
        "token for tenant {name} (shown once; stored hashed in {}):",
        data_dir.join(db::DB_FILE).display()
    );
    println!("{token}");
    Ok(())
}

fn serve(args: ServeArgs, data_dir: PathBuf) -> Result<()> {
    if args.max_jobs == 0 {
        bail!("--max-jobs must be at least 1");
    }
    for sub in ["blobs", "tmp", "jobs"] {
        let d = data_dir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("{}", data_dir.display()))?;
    // Uploads that a previous process did not finish.
    if let Ok(entries) = std::fs::read_dir(data_dir.join("tmp")) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let db = Arc::new(db::Db::open(&data_dir)?);
    let exe = std::env::current_exe().context("locating the nshap executable")?;
    let runner = Arc::new(jobs::Runner::new(db, data_dir.clone(), exe, args.max_jobs));
    let resumed = runner.recover()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.bind)
            .await
            .with_context(|| format!("binding {}", args.bind))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        eprintln!(
            "nshap serve: data in {}, {} job slot(s), {resumed} job(s) resumed",
            data_dir.display(),
            args.max_jobs
        );
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(runner.clone().schedule(shutdown_rx.clone()));
        {
            let r = runner.clone();
            tokio::spawn(async move { r.probe_adapter().await });
        }
        let state = api::AppState {
            runner: runner.clone(),
            data_dir: data_dir.clone(),
            max_upload_bytes: args.max_upload_bytes,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            shutdown: shutdown_rx,
        };
        let app = api::router(state);
        let r = runner.clone();
        let signal = async move {
            wait_for_signal().await;
            eprintln!("nshap serve: shutting down: interrupting running jobs (they resume on the next start)");
            r.begin_shutdown();
            let _ = shutdown_tx.send(true);
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .context("serving")?;
        runner
            .wait_children(Duration::from_secs(args.shutdown_grace_secs))
            .await;
        eprintln!("nshap serve: stopped");
        Ok(())
    })
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
