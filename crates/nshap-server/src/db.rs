//! The job store: SQLite (WAL) holding tenants, token hashes, models, datasets and jobs.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

pub const DB_FILE: &str = "nshap.db";

pub struct Db {
    conn: Mutex<Connection>,
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a job runs: the validated fields of `POST /v1/jobs`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobParams {
    pub players: Vec<String>,
    pub method: String,
    pub metric: String,
    pub baseline: String,
    pub top_k: u64,
    pub budget: u64,
    pub seed: u64,
    pub backend: String,
    pub examples_per_eval: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub id: String,
    pub spec_blob: Option<String>,
    pub arch: Option<String>,
    pub input: Option<String>,
    pub weights_blob: String,
    pub bytes: i64,
    pub created_at: f64,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub id: String,
    pub blob: String,
    pub inputs_name: String,
    pub labels_name: String,
    pub bytes: i64,
    pub created_at: f64,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub tenant_id: i64,
    pub model_id: String,
    pub dataset_id: String,
    pub params: JobParams,
    pub state: String,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub error: Option<String>,
    pub ablation_error: Option<String>,
    pub pid: Option<i64>,
    pub attempts: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id), id TEXT NOT NULL,
    spec_blob TEXT, arch TEXT, input TEXT, weights_blob TEXT NOT NULL,
    bytes INTEGER NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE TABLE IF NOT EXISTS datasets (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id), id TEXT NOT NULL, blob TEXT NOT NULL,
    inputs_name TEXT NOT NULL, labels_name TEXT NOT NULL, bytes INTEGER NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (tenant_id, id));
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    model_id TEXT NOT NULL, dataset_id TEXT NOT NULL, params TEXT NOT NULL,
    state TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    error TEXT, ablation_error TEXT, pid INTEGER, attempts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant_id, seq);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
";

const JOB_COLUMNS: &str = "id, tenant_id, model_id, dataset_id, params, state, created_at, \
     started_at, finished_at, error, ablation_error, pid, attempts";

fn job_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let params: String = row.get(4)?;
    let params = serde_json::from_str(&params).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Job {
        id: row.get(0)?,
        tenant_id: row.get(1)?,
        model_id: row.get(2)?,
        dataset_id: row.get(3)?,
        params,
        state: row.get(5)?,
        created_at: row.get(6)?,
        started_at: row.get(7)?,
        finished_at: row.get(8)?,
        error: row.get(9)?,
        ablation_error: row.get(10)?,
        pid: row.get(11)?,
        attempts: row.get(12)?,
    })
}

impl Db {
    pub fn open(data_dir: &Path) -> Result<Db> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join(DB_FILE);
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "{}: could not enable WAL mode",
            path.display()
        );
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("{}: creating tables", path.display()))?;
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent: recover the guard.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create the tenant `name` if new and store a token hash for it.
    pub fn add_token(&self, name: &str, token_hash: &str) -> Result<i64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?1, ?2)",
            params![name, now()],
        )?;
        let id: i64 = tx.query_row("SELECT id FROM tenants WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
        tx.execute(
            "INSERT INTO tokens (hash, tenant_id, created_at) VALUES (?1, ?2, ?3)",
            params![token_hash, id, now()],
        )?;
        tx.commit()?;
        Ok(id)
    }

    pub fn tenant_for_token(&self, token_hash: &str) -> Result<Option<i64>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT tenant_id FROM tokens WHERE hash = ?1",
                [token_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Insert a model; returns false if the tenant already had it.
    pub fn add_model(&self, tenant: i64, m: &Model) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO models (tenant_id, id, spec_blob, arch, input, weights_blob, bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![tenant, m.id, m.spec_blob, m.arch, m.input, m.weights_blob, m.bytes, m.created_at],
        )?;
        Ok(n == 1)
    }

    pub fn model(&self, tenant: i64, id: &str) -> Result<Option<Model>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, spec_blob, arch, input, weights_blob, bytes, created_at FROM models
                 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
                |r| {
                    Ok(Model {
                        id: r.get(0)?,
                        spec_blob: r.get(1)?,
                        arch: r.get(2)?,
                        input: r.get(3)?,
                        weights_blob: r.get(4)?,
                        bytes: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn add_dataset(&self, tenant: i64, d: &Dataset) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO datasets (tenant_id, id, blob, inputs_name, labels_name, bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![tenant, d.id, d.blob, d.inputs_name, d.labels_name, d.bytes, d.created_at],
        )?;
        Ok(n == 1)
    }

    pub fn dataset(&self, tenant: i64, id: &str) -> Result<Option<Dataset>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, blob, inputs_name, labels_name, bytes, created_at FROM datasets
                 WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
                |r| {
                    Ok(Dataset {
                        id: r.get(0)?,
                        blob: r.get(1)?,
                        inputs_name: r.get(2)?,
                        labels_name: r.get(3)?,
                        bytes: r.get(4)?,
                        created_at: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn add_job(&self, job: &Job) -> Result<()> {
        self.conn().execute(
            "INSERT INTO jobs (id, tenant_id, model_id, dataset_id, params, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                job.id,
                job.tenant_id,
                job.model_id,
                job.dataset_id,
                serde_json::to_string(&job.params)?,
                job.state,
                job.created_at
            ],
        )?;
        Ok(())
    }

    /// A tenant's job (None for another tenant's).
    pub fn job(&self, tenant: i64, id: &str) -> Result<Option<Job>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ?1 AND id = ?2"),
                params![tenant, id],
                job_from_row,
            )
            .optional()?)
    }

    pub fn job_any(&self, id: &str) -> Result<Option<Job>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()?)
    }

    pub fn list_jobs(&self, tenant: i64, state: Option<&str>, limit: u32) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = ?1 AND (?2 IS NULL OR state = ?2)
             ORDER BY seq DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![tenant, state, limit], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Jobs in a state, oldest first.
    pub fn jobs_in_state(&self, state: &str, limit: u32) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![state, limit], job_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn counts_by_state(&self) -> Result<Vec<(String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// queued -> running, if still queued (a cancel may have come first).
    pub fn mark_started(&self, id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?2),
             attempts = attempts + 1 WHERE id = ?1 AND state = 'queued'",
            params![id, now()],
        )?;
        Ok(n == 1)
    }

    pub fn set_pid(&self, id: &str, pid: Option<i64>) -> Result<()> {
        self.conn()
            .execute("UPDATE jobs SET pid = ?2 WHERE id = ?1", params![id, pid])?;
        Ok(())
    }

    /// running -> done/failed, unless it was cancelled meanwhile.
    pub fn finish(
        &self,
        id: &str,
        state: &str,
        error: Option<&str>,
        ablation_error: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET state = ?2, error = ?3, ablation_error = ?4, finished_at = ?5,
             pid = NULL WHERE id = ?1 AND state = 'running'",
            params![id, state, error, ablation_error, now()],
        )?;
        Ok(())
    }

    /// running -> queued (its child was interrupted; it resumes from its checkpoint).
    pub fn requeue(&self, id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET state = 'queued', pid = NULL WHERE id = ?1 AND state = 'running'",
            params![id],
        )?;
        Ok(())
    }

    /// queued/running -> cancelled. Returns the state it had, None if the job is not the
    /// tenant's.
    pub fn cancel(&self, tenant: i64, id: &str) -> Result<Option<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM jobs WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(s) = &state {
            if s == "queued" || s == "running" {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1",
                    params![id, now()],
                )?;
            }
        }
        tx.commit()?;
        Ok(state)
    }
}
