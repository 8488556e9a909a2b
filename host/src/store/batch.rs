//! Group commit: every write of the store is a job for a committer, which
//! takes whatever jobs are waiting, runs them in one transaction and commits
//! once (SQLite: one committer on a thread of its own, its one writer;
//! PostgreSQL: a few tasks at once). Under load many deliveries and items
//! share one fsync; alone, a job commits by itself with no added wait.
//!
//! Optimistic: a batch runs with no savepoints (each costs statements on the
//! one writer); when any job of it fails, the whole transaction is rolled back
//! and every job runs again alone, so a failing job takes nothing else with it.
//! Jobs are therefore re-runnable (`Fn`), and a job's work must not depend on
//! having run before.
//!
//! Invariant: a job's caller hears its result only after the commit that holds it
//! returned, so an `Ok` of a [`Durability::Synced`] write still means "on disk"
//! (synchronous=FULL on SQLite). A batch of [`Durability::Deferred`] writes only
//! commits without waiting for the disk; a batch with any synced job is synced,
//! and so hardens every deferred commit before it (one log, flushed in order;
//! a synced transaction that writes nothing flushes nothing).

use super::StoreError;
use super::backend::{Backend, Tx};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Whether a write's commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk when the write returns: what a 2xx, an intake answer, a lease
    /// before a provider call and an operator's change rely on.
    Synced,
    /// Committed (visible, and kept if the process dies) but flushed with the
    /// next synced commit or checkpoint: a crash of the machine (or of the
    /// PostgreSQL server) may undo it. Only for work that is redone from a
    /// synced state when undone, such as an item's outcome after its delivery
    /// was stored (the item is leased and pending until then, and its writes
    /// are idempotent).
    Deferred,
}

impl Durability {
    /// What a transaction holding jobs of these durabilities needs: synced
    /// as soon as one of them is.
    fn of_batch(jobs: impl IntoIterator<Item = Durability>) -> Durability {
        if jobs.into_iter().any(|d| d == Durability::Synced) {
            Durability::Synced
        } else {
            Durability::Deferred
        }
    }
}

/// The future a job's work returns, borrowing the batch's transaction.
pub type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

/// Most jobs in one transaction: bounds how long one commit holds SQLite's lock.
const MAX_BATCH: usize = 256;
/// Jobs waiting for the committer before callers wait for room.
const QUEUE: usize = 4096;

#[async_trait::async_trait]
trait Job: Send {
    /// Run inside the batch's transaction; keep the outcome until the commit
    /// (a second run replaces the first's outcome).
    async fn run(&mut self, tx: &mut dyn Tx);
    /// Whether the work succeeded (else the batch runs again job by job).
    fn succeeded(&self) -> bool;
    fn durability(&self) -> Durability;
    /// The batch committed (or not): hand the outcome to the caller.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct FnJob<T, F> {
    work: F,
    durability: Durability,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

#[async_trait::async_trait]
impl<T, F> Job for FnJob<T, F>
where
    T: Send + 'static,
    F: for<'t> Fn(&'t mut dyn Tx) -> TxFuture<'t, T> + Send + Sync + 'static,
{
    async fn run(&mut self, tx: &mut dyn Tx) {
        self.outcome = Some((self.work)(tx).await);
    }

    fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Ok(_)))
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match (self.outcome, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(e)) => Err(StoreError::Batch(e.to_string())),
            (None, Err(e)) => Err(StoreError::Batch(e.to_string())),
            (None, Ok(())) => Err(StoreError::Batch("the write was never run".into())),
        };
        // The caller may have gone (its request was dropped): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// The handle every clone of the store shares.
pub struct GroupCommit {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl GroupCommit {
    /// Start `committers` committer tasks for `db` (one for SQLite's single
    /// writer; several for a server database, where each commit waits on a
    /// round trip that others can overlap). They run on the current tokio
    /// runtime, or, where the backend's writes block their thread
    /// ([`Backend::writes_block`]), each on a thread of its own.
    pub fn start(db: Arc<dyn Backend>, committers: usize) -> Result<GroupCommit, StoreError> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..committers.max(1) {
            let committer = commit_loop(db.clone(), jobs.clone());
            if db.writes_block() {
                // Its own small runtime: jobs are futures, but the only thing
                // they wait on is the transaction, which answers at once. The
                // thread ends when the store (the queue's sender) is dropped.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(StoreError::WriterThread)?;
                std::thread::Builder::new()
                    .name(format!("portico-writer-{n}"))
                    .spawn(move || runtime.block_on(committer))
                    .map_err(StoreError::WriterThread)?;
            } else {
                tokio::spawn(committer);
            }
        }
        Ok(GroupCommit { queue })
    }

    /// Run `work` in a write transaction shared with whatever else is waiting;
    /// returns once it is committed and on disk. `work` may run twice (see the
    /// module doc).
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> TxFuture<'t, T> + Send + Sync + 'static,
    {
        self.write_with(Durability::Synced, work).await
    }

    /// [`GroupCommit::write`] with the durability the caller needs.
    pub async fn write_with<T, F>(&self, durability: Durability, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut dyn Tx) -> TxFuture<'t, T> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(FnJob {
            work,
            durability,
            outcome: None,
            reply,
        });
        let committed = async {
            self.queue.send(job).await.map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        };
        // Queue wait and commit, as the caller sees them.
        tracing::Instrument::instrument(committed, tracing::info_span!("store.write")).await
    }
}

async fn commit_loop(db: Arc<dyn Backend>, jobs: Arc<Mutex<mpsc::Receiver<Box<dyn Job>>>>) {
    loop {
        // Take a batch, then let the next committer take the next one while
        // this one commits.
        let batch = {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        commit_batch(db.as_ref(), batch).await;
    }
}

async fn commit_batch(db: &dyn Backend, mut batch: Vec<Box<dyn Job>>) {
    if batch.len() > 1 {
        let durability = Durability::of_batch(batch.iter().map(|j| j.durability()));
        let mut tx = match db.begin(durability).await {
            Ok(tx) => tx,
            Err(e) => return finish_all(batch, Err(&e)),
        };
        let mut all_ok = true;
        for job in &mut batch {
            job.run(tx.as_mut()).await;
            if !job.succeeded() {
                all_ok = false;
                break;
            }
        }
        if all_ok {
            let commit = tx.commit().await;
            if let Err(e) = &commit {
                tracing::warn!(jobs = batch.len(), "a group commit failed: {e}");
            }
            return finish_all(batch, commit.as_ref().map(|_| ()));
        }
        // Dropping the transaction rolls it back; then each job on its own.
        drop(tx);
    }
    for job in batch {
        commit_alone(db, job).await;
    }
}

/// One job in its own transaction.
async fn commit_alone(db: &dyn Backend, mut job: Box<dyn Job>) {
    let mut tx = match db.begin(job.durability()).await {
        Ok(tx) => tx,
        Err(e) => return job.finish(Err(&e)),
    };
    job.run(tx.as_mut()).await;
    let commit = if job.succeeded() {
        tx.commit().await
    } else {
        Ok(())
    };
    job.finish(commit.as_ref().map(|_| ()));
}

fn finish_all(batch: Vec<Box<dyn Job>>, commit: Result<(), &StoreError>) {
    for job in batch {
        job.finish(commit);
    }
}

#[cfg(test)]
mod tests {
    use super::Durability::{self, Deferred, Synced};

    #[test]
    fn a_batch_is_synced_when_any_of_its_jobs_is() {
        assert_eq!(Durability::of_batch([Deferred, Deferred]), Deferred);
        assert_eq!(Durability::of_batch([Deferred, Synced, Deferred]), Synced);
        assert_eq!(Durability::of_batch([Synced]), Synced);
    }
}
