//! Group commit of single-batch applies: the controller's reconciles (16 at once per kind)
//! each apply one object's batch. Applied one transaction each, they queued for SQLite's one
//! writer and paid the commit, and the WAL frames of every page they touched, one batch at a
//! time: at 10,000 Memberships the wait for the writer was the largest part of a reconcile
//! (3.1 ms a batch, 28 ms with the wait; 285 s of the reconciles' summed 608 s, 218 s with
//! this). Here the batches that are waiting when a writer turns to them are applied in one
//! transaction, each inside a savepoint of its own:
//!
//! - each batch stays all or nothing, with its own guard and its own audit rows: a batch that
//!   fails (a lost race, a constraint) is rolled back to its savepoint and reported to its
//!   caller alone; the others go on;
//! - the batches of a group are applied in the order they arrived, as separate transactions
//!   would have been;
//! - a failure of the transaction itself (begin, commit, a savepoint that cannot be rolled
//!   back) fails every batch of the group with that error, and nothing of the group is kept;
//! - a caller that stops waiting (a cancelled reconcile) does not cancel its batch: the group
//!   runs on a task of its own, and the next pass reads what was written.
//!
//! A lone batch is applied as before (no savepoint): group commit costs nothing when there
//! is nothing to combine.

use super::{ApplyOutcome, Backend, Batch, Result, StoreError};
use sqlx::AnyPool;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Batches per transaction at most: a group holds SQLite's write lock for a few
/// milliseconds, never long enough to stall the other writers (console, outbox, Lockbox).
const MAX_BATCHES: usize = 64;

/// A batch waiting for a writer, and where its outcome goes.
struct Job {
    batch: Batch,
    done: oneshot::Sender<Result<ApplyOutcome>>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Writer tasks running now.
    writers: usize,
    /// Batches taken in groups of two or more, since the store opened.
    grouped: u64,
}

/// The queue of batches and the writer tasks that drain it.
pub(super) struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
    pool: AnyPool,
    backend: Backend,
}

impl GroupCommit {
    /// Batches applied through `pool` (the store's writer pool).
    pub(super) fn new(pool: AnyPool, backend: Backend) -> GroupCommit {
        GroupCommit { queue: Default::default(), pool, backend }
    }

    /// Writer tasks at most: SQLite has one writer; PostgreSQL's row locks let a few groups
    /// commit side by side, each on a connection of the pool (of 8) that reads share.
    fn writers(&self) -> usize {
        match self.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 3,
        }
    }

    /// Batches applied in a group of two or more so far (tests check that a group formed).
    pub(super) fn grouped(&self) -> u64 {
        lock(&self.queue).grouped
    }

    /// Apply `batch` in a transaction shared with the batches waiting beside it.
    pub(super) async fn apply(&self, batch: &Batch) -> Result<ApplyOutcome> {
        let (done, outcome) = oneshot::channel();
        let start = {
            let mut q = lock(&self.queue);
            q.jobs.push_back(Job { batch: batch.clone(), done });
            let start = q.writers < self.writers();
            q.writers += usize::from(start);
            start
        };
        if start {
            let writer = Writer { queue: self.queue.clone(), counted: true };
            tokio::spawn(writer.run(self.pool.clone(), self.backend));
        }
        outcome.await.map_err(|_| StoreError::Unavailable("the store's writer stopped before applying".into()))?
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// One writer task: takes the waiting batches, applies them as a group, until none wait.
/// Dropped before it ran out of work (it panicked, or the runtime shut down), it gives its
/// place back; the jobs it held, and those queued when no writer is left, report that the
/// writer stopped rather than wait for a writer that the next apply would start.
struct Writer {
    queue: Arc<Mutex<Queue>>,
    /// Still counted in `Queue::writers`.
    counted: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.counted {
            let mut q = lock(&self.queue);
            q.writers -= 1;
            if q.writers == 0 {
                q.jobs.clear();
            }
        }
    }
}

impl Writer {
    async fn run(mut self, pool: AnyPool, backend: Backend) {
        loop {
            let jobs: Vec<Job> = {
                let mut q = lock(&self.queue);
                let n = q.jobs.len().min(MAX_BATCHES);
                if n == 0 {
                    // Under the same lock as the look at the queue: a caller queueing from
                    // now on starts a writer of its own.
                    q.writers -= 1;
                    self.counted = false;
                    return;
                }
                if n > 1 {
                    q.grouped += n as u64;
                }
                q.jobs.drain(..n).collect()
            };
            let batches: Vec<&Batch> = jobs.iter().map(|j| &j.batch).collect();
            let outcomes = apply_group(&pool, backend, &batches).await;
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                // A caller that stopped waiting: its batch is applied all the same.
                let _ = job.done.send(outcome);
            }
        }
    }
}

/// Apply `batches` in one transaction, each in a savepoint of its own (a lone batch needs
/// none: its failure is the transaction's): one outcome per batch, in order.
async fn apply_group(pool: &AnyPool, backend: Backend, batches: &[&Batch]) -> Vec<Result<ApplyOutcome>> {
    let all_fail = |e: &StoreError| batches.iter().map(|_| Err(e.clone())).collect();
    let mut tx = match super::sql::begin(pool, backend).await {
        Ok(tx) => tx,
        Err(e) => return all_fail(&e),
    };
    let grouped = batches.len() > 1;
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        if grouped && let Err(e) = savepoint(&mut tx, "SAVEPOINT batch").await {
            return all_fail(&e);
        }
        let (outcome, end) = match super::sql::apply_in(&mut tx, backend, batch, None).await {
            Ok(out) => (Ok(out), "RELEASE SAVEPOINT batch"),
            Err(e) if !grouped => return vec![Err(e)],
            // Back to before this batch; the transaction goes on with the next one.
            Err(e) => (Err(e), "ROLLBACK TO SAVEPOINT batch; RELEASE SAVEPOINT batch"),
        };
        if grouped && let Err(e) = savepoint(&mut tx, end).await {
            return all_fail(&e);
        }
        outcomes.push(outcome);
    }
    match tx.commit().await {
        Ok(()) => outcomes,
        Err(e) => all_fail(&super::sql::map_err(e)),
    }
}

async fn savepoint(tx: &mut sqlx::Transaction<'static, sqlx::Any>, sql: &'static str) -> Result<()> {
    sqlx::raw_sql(sql).execute(&mut **tx).await.map(|_| ()).map_err(super::sql::map_err)
}
