//! The queue and the runner: each job is a child process `nshap run ... --out <data>/jobs/<id>`,
//! followed by `nshap ablate --from <dir>`. Cancel kills the child; shutdown interrupts it (it
//! saves its state); a restart resumes every job the database says was queued or running.

use crate::db::{Db, Job};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

pub const CHECKPOINT_SECS: &str = "0.5";

struct Running {
    pid: Option<u32>,
    cancel: Arc<Notify>,
    backend: String,
}

#[derive(Default)]
struct Rate {
    last_evals: HashMap<String, u64>,
    total: f64,
    last_total: f64,
    last_sample: Option<Instant>,
    per_second: f64,
}

pub struct Runner {
    pub db: Arc<Db>,
    pub data_dir: PathBuf,
    pub exe: PathBuf,
    pub max_jobs: usize,
    running: Mutex<HashMap<String, Running>>,
    wake: Notify,
    shutting_down: AtomicBool,
    rate: Mutex<Rate>,
    pub adapter: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn job_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("jobs").join(id)
}

pub fn blob_path(data_dir: &Path, digest: &str) -> PathBuf {
    data_dir.join("blobs").join(digest)
}

/// The child dies with us (SIGKILL when the server dies, even by kill -9): no orphan keeps
/// writing into a job directory that a restarted server resumes.
fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: only async-signal-safe calls between fork and exec.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Is `pid` alive and a child we started for `dir`? (Guards against a recycled pid.)
fn is_our_child(pid: i64, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let dir = dir.to_string_lossy();
    cmdline
        .split(|&b| b == 0)
        .any(|arg| String::from_utf8_lossy(arg).contains(dir.as_ref()))
}

/// Exit status of `nshap run` when it wrote its results without resolving its top-k.
const RUN_UNRESOLVED_EXIT: i32 = 3;

/// The last `error: ...` a child wrote, without the prefix, with the indented lines that follow
/// it (a spec with several problems lists one per line).
fn child_error(log: &Path, status: ExitStatus) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    if let Some(at) = lines.iter().rposition(|l| l.starts_with("error: ")) {
        let mut message = lines[at]["error: ".len()..].to_string();
        for more in lines[at + 1..].iter().take_while(|l| l.starts_with("  ")) {
            message.push('\n');
            message.push_str(more);
        }
        return message;
    }
    if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
        return format!("{status}: {line}");
    }
    format!("the run exited with {status}")
}

impl Runner {
    pub fn new(db: Arc<Db>, data_dir: PathBuf, exe: PathBuf, max_jobs: usize) -> Runner {
        Runner {
            db,
            data_dir,
            exe,
            max_jobs: max_jobs.max(1),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            shutting_down: AtomicBool::new(false),
            rate: Mutex::new(Rate::default()),
            adapter: Mutex::new(None),
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn running_count(&self) -> usize {
        lock(&self.running).len()
    }

    /// Running jobs per backend (as requested).
    pub fn running_by_backend(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in lock(&self.running).values() {
            *m.entry(r.backend.clone()).or_default() += 1;
        }
        m
    }

    pub fn evaluations(&self) -> (f64, f64) {
        let r = lock(&self.rate);
        (r.total, r.per_second)
    }

    /// Before serving: kill children a previous server left behind (if they outlived it) and
    /// put its running jobs back in the queue.
    pub fn recover(&self) -> Result<usize> {
        let stale = self.db.jobs_in_state("running", u32::MAX)?;
        for job in &stale {
            let dir = job_dir(&self.data_dir, &job.id);
            if let Some(pid) = job.pid {
                if pid > 0 && is_our_child(pid, &dir) {
                    // SAFETY: plain syscall on a pid whose command line names this job.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    }
                    let start = Instant::now();
                    while is_our_child(pid, &dir) && start.elapsed() < Duration::from_secs(10) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            self.db.requeue(&job.id)?;
        }
        Ok(stale.len())
    }

    /// The scheduler: start queued jobs while slots are free; sample progress for /metrics.
    pub async fn schedule(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            while self.running_count() < self.max_jobs {
                let next = match self.db.jobs_in_state("queued", 1) {
                    Ok(mut v) => v.pop(),
                    Err(e) => {
                        eprintln!("nshap serve: reading the queue: {e:#}");
                        None
                    }
                };
                let Some(job) = next else { break };
                if let Err(e) = self.clone().start(job.clone()) {
                    eprintln!("nshap serve: starting job {}: {e:#}", job.id);
                    let _ = self.db.finish(
                        &job.id,
                        "failed",
                        Some(&format!("could not start the run: {e:#}")),
                        None,
                    );
                }
            }
            self.sample_rate();
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn sample_rate(&self) {
        let ids: Vec<String> = lock(&self.running).keys().cloned().collect();
        let mut evals = Vec::new();
        for id in ids {
            if let Some(p) = crate::api::read_progress(&job_dir(&self.data_dir, &id)) {
                if let Some(e) = p.get("evaluations").and_then(|v| v.as_u64()) {
                    evals.push((id, e));
                }
            }
        }
        let mut r = lock(&self.rate);
        for (id, e) in evals {
            let last = r.last_evals.insert(id, e).unwrap_or(e);
            r.total += e.saturating_sub(last) as f64;
        }
        let now = Instant::now();
        match r.last_sample {
            Some(t) if now.duration_since(t) >= Duration::from_secs(1) => {
                r.per_second = (r.total - r.last_total) / now.duration_since(t).as_secs_f64();
                r.last_total = r.total;
                r.last_sample = Some(now);
            }
            Some(_) => {}
            None => r.last_sample = Some(now),
        }
    }

    fn run_command(&self, job: &Job, dir: &Path) -> Result<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.current_dir(&self.data_dir);
        if dir.join("state.json").exists() && dir.join("run.json").exists() {
            cmd.arg("run").arg("--resume").arg(dir);
        } else {
            let tenant = job.tenant_id;
            let model = self
                .db
                .model(tenant, &job.model_id)?
                .context("the job's model is gone")?;
            let data = self
                .db
                .dataset(tenant, &job.dataset_id)?
                .context("the job's dataset is gone")?;
            let blob = |d: &str| blob_path(&self.data_dir, d);
            cmd.arg("run");
            match (&model.spec_blob, &model.arch) {
                (Some(spec), _) => {
                    cmd.arg("--model").arg(blob(spec));
                }
                (None, Some(arch)) => {
                    cmd.arg(format!("--arch={arch}"));
                    if let Some(input) = &model.input {
                        cmd.arg(format!("--input={input}"));
                    }
                }
                (None, None) => anyhow::bail!("the job's model has neither spec nor arch"),
            }
            cmd.arg("--weights").arg(blob(&model.weights_blob));
            cmd.arg("--data").arg(blob(&data.blob));
            cmd.arg(format!("--inputs-name={}", data.inputs_name));
            cmd.arg(format!("--labels-name={}", data.labels_name));
            let p = &job.params;
            cmd.arg(format!("--players={}", p.players.join(",")));
            cmd.arg(format!("--method={}", p.method));
            cmd.arg(format!("--metric={}", p.metric));
            cmd.arg(format!("--baseline={}", p.baseline));
            cmd.arg(format!("--top-k={}", p.top_k));
            cmd.arg(format!("--budget={}", p.budget));
            cmd.arg(format!("--seed={}", p.seed));
            cmd.arg(format!("--backend={}", p.backend));
            if let Some(e) = p.examples_per_eval {
                cmd.arg(format!("--examples-per-eval={e}"));
            }
            cmd.arg("--out").arg(dir).arg("--overwrite");
        }
        cmd.arg(format!("--checkpoint-secs={CHECKPOINT_SECS}"));
        Ok(cmd)
    }

    fn spawn(&self, mut cmd: tokio::process::Command, log: &Path) -> Result<tokio::process::Child> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .env(
                "XDG_RUNTIME_DIR",
                std::env::var_os("XDG_RUNTIME_DIR").unwrap_or_else(|| "/tmp".into()),
            );
        die_with_parent(&mut cmd);
        cmd.spawn().context("spawning the run")
    }

    /// Start a queued job (on a runtime worker thread: PR_SET_PDEATHSIG follows the spawning
    /// thread, and worker threads live as long as the server).
    fn start(self: Arc<Self>, job: Job) -> Result<()> {
        if !self.db.mark_started(&job.id)? {
            return Ok(()); // cancelled meanwhile
        }
        let dir = job_dir(&self.data_dir, &job.id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cmd = self.run_command(&job, &dir)?;
        let child = self.spawn(cmd, &dir.join("run.log"))?;
        let cancel = Arc::new(Notify::new());
        let pid = child.id();
        // From here on the child exists: errors are logged, the monitor below always runs.
        if let Err(e) = self.db.set_pid(&job.id, pid.map(i64::from)) {
            eprintln!("nshap serve: job {}: recording the pid: {e:#}", job.id);
        }
        lock(&self.running).insert(
            job.id.clone(),
            Running {
                pid,
                cancel: cancel.clone(),
                backend: job.params.backend.clone(),
            },
        );
        // A cancel that came between mark_started and the insert above found no child to kill.
        let state = self.db.job_any(&job.id).ok().flatten().map(|j| j.state);
        if state.as_deref() != Some("running") {
            cancel.notify_one();
        }
        let runner = self.clone();
        tokio::spawn(async move {
            let id = job.id.clone();
            if let Err(e) = runner.clone().monitor(job, child, cancel, dir).await {
                eprintln!("nshap serve: job {id}: {e:#}");
                let _ = runner
                    .db
                    .finish(&id, "failed", Some(&format!("{e:#}")), None);
            }
            lock(&runner.running).remove(&id);
            lock(&runner.rate).last_evals.remove(&id);
            runner.wake();
        });
        Ok(())
    }

    /// Wait for the run (or a cancel), then ablate, then record the outcome.
    async fn monitor(
        self: Arc<Self>,
        job: Job,
        mut child: tokio::process::Child,
        cancel: Arc<Notify>,
        dir: PathBuf,
    ) -> Result<()> {
        let status = tokio::select! {
            s = child.wait() => s?,
            _ = cancel.notified() => {
                let _ = child.start_kill();
                child.wait().await?;
                return Ok(()); // the database already says cancelled
            }
        };
        let state = self.db.job_any(&job.id)?.map(|j| j.state);
        if state.as_deref() != Some("running") {
            return Ok(()); // cancelled
        }
        // Exit 3: the run finished and wrote its results, but its top-k is not resolved
        // (report.json says so); the job is done.
        if !status.success() && status.code() != Some(RUN_UNRESOLVED_EXIT) {
            if self.is_shutting_down() {
                return Ok(()); // interrupted by us: resumes on the next start
            }
            let message = self.client_paths(&job, child_error(&dir.join("run.log"), status));
            if message.starts_with("interrupted: state saved") {
                // Someone else sent SIGINT: the state is saved, run it again from there.
                self.db.requeue(&job.id)?;
                return Ok(());
            }
            self.db.finish(&job.id, "failed", Some(&message), None)?;
            return Ok(());
        }
        if self.is_shutting_down() {
            return Ok(()); // ablate on the next start (the resume finishes at once)
        }
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.current_dir(&self.data_dir)
            .arg("ablate")
            .arg("--from")
            .arg(&dir);
        let log = dir.join("ablate.log");
        let mut child = self.spawn(cmd, &log)?;
        if let Some(r) = lock(&self.running).get_mut(&job.id) {
            r.pid = child.id();
        }
        self.db.set_pid(&job.id, child.id().map(i64::from))?;
        let status = tokio::select! {
            s = child.wait() => s?,
            _ = cancel.notified() => {
                let _ = child.start_kill();
                child.wait().await?;
                return Ok(());
            }
        };
        if !status.success() && self.is_shutting_down() {
            return Ok(());
        }
        let ablation_error =
            (!status.success()).then(|| self.client_paths(&job, child_error(&log, status)));
        self.db
            .finish(&job.id, "done", None, ablation_error.as_deref())?;
        Ok(())
    }

    /// A child's message in the client's terms: the uploaded file's role and digest instead of
    /// its path on the server.
    fn client_paths(&self, job: &Job, mut message: String) -> String {
        let mut names = Vec::new();
        if let Ok(Some(m)) = self.db.model(job.tenant_id, &job.model_id) {
            if let Some(spec) = m.spec_blob {
                names.push((spec.clone(), format!("spec {spec}")));
            }
            names.push((
                m.weights_blob.clone(),
                format!("weights {}", m.weights_blob),
            ));
        }
        if let Ok(Some(d)) = self.db.dataset(job.tenant_id, &job.dataset_id) {
            names.push((d.blob.clone(), format!("data {}", d.blob)));
        }
        for (digest, name) in names {
            let path = blob_path(&self.data_dir, &digest);
            message = message.replace(path.to_string_lossy().as_ref(), &name);
        }
        message.replace(self.data_dir.to_string_lossy().as_ref(), "<data-dir>")
    }

    /// Cancel a running job's child (the database row is already `cancelled`).
    pub fn cancel(&self, id: &str) {
        if let Some(r) = lock(&self.running).get(id) {
            r.cancel.notify_one();
        }
    }

    /// Stop starting jobs and SIGINT the running children (they checkpoint and exit).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for r in lock(&self.running).values() {
            if let Some(pid) = r.pid {
                // SAFETY: plain syscall on our own child's pid.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGINT);
                }
            }
        }
    }

    /// Wait for the children to exit; SIGKILL whatever is left after `grace`.
    pub async fn wait_children(&self, grace: Duration) {
        let start = Instant::now();
        while self.running_count() > 0 {
            if start.elapsed() > grace {
                for r in lock(&self.running).values() {
                    if let Some(pid) = r.pid {
                        // SAFETY: as above.
                        unsafe {
                            libc::kill(pid as libc::pid_t, libc::SIGKILL);
                        }
                    }
                }
            }
            if start.elapsed() > grace + Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The first GPU adapter `nshap devices` reports (for /metrics), looked up once.
    pub async fn probe_adapter(&self) {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("devices")
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await;
        let adapter = match out {
            Ok(Ok(o)) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let first = text.lines().next().unwrap_or("").to_string();
                if first.starts_with("no GPU adapter") {
                    "none".to_string()
                } else {
                    first
                        .split(" driver")
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_string()
                }
            }
            _ => "unknown".to_string(),
        };
        *lock(&self.adapter) = Some(adapter);
    }
}
