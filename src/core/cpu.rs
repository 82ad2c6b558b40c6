//! A fixed pool of threads for CPU-heavy work (password hashing): as many threads as may
//! hash at once, so the async workers never stall, and per-thread scratch memory
//! (argon2's 19 MiB) is allocated once per thread, not per call. The threads run at a
//! lower scheduling priority (nice `NICE`): a hash takes a core for ~15 ms, and at equal
//! priority every request (and PostgreSQL) queued behind one, which set the p99 of cheap
//! requests under a login load; hashes still take every cycle nothing else wants.
//!
//! The queue in front of the threads is bounded twice: at most `depth` jobs wait (more
//! are refused at once, `Busy`, which the API answers with 503 and `Retry-After`), and a
//! job that waited longer than `MAX_QUEUE_WAIT` is dropped unrun. The second bound keeps
//! a login's reservation alive for as long as its guess can still be checked: a pending
//! attempt counts against the lockout for 30 s (accounts::repo::attempts), far beyond this.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The hashing threads' nice value (0 is the default; 19 the lowest priority).
const NICE: i32 = 10;

/// Lowers the calling thread's priority to `NICE` (Linux: the nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers and touches no memory of ours; who = 0
        // is the calling thread on Linux.
        let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
        if done != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower the hashing threads' priority");
        }
    }
}

/// The longest a job may wait for a thread before it is dropped unrun.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct CpuPool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
    /// One permit per running or waiting job: `threads + depth` in all.
    slots: Arc<Semaphore>,
    max_wait: Duration,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The queue is full, or the job waited past `MAX_QUEUE_WAIT`: it did not run.
    #[error("the CPU pool is saturated; the job did not run")]
    Busy,
    /// The job panicked; its answer is lost.
    #[error("the CPU pool lost the job (a panic in it)")]
    Lost,
}

impl CpuPool {
    /// `threads` workers with at most `depth` jobs waiting for them.
    pub fn new(threads: usize, depth: usize) -> Self {
        Self::with_max_wait(threads, depth, MAX_QUEUE_WAIT)
    }

    pub fn with_max_wait(threads: usize, depth: usize, max_wait: Duration) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new().name(format!("gatehouse-cpu-{i}")).spawn(move || {
                lower_priority();
                loop {
                    // The lock is held only while waiting for the next job, not while running it.
                    let job = match queue.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking job loses its answer (the caller sees Lost), not the thread.
                        Ok(job) => drop(std::panic::catch_unwind(AssertUnwindSafe(job))),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a CPU pool thread");
            }
        }
        CpuPool { jobs, threads, slots: Arc::new(Semaphore::new(threads + depth)), max_wait }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a pool thread and awaits its result; `Busy` at once when `depth` jobs
    /// already wait. The slot is held until the job ends, even if the caller goes away,
    /// so the bound counts work in flight, not callers.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = Arc::clone(&self.slots).try_acquire_owned().map_err(|_| PoolError::Busy)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued_at = Instant::now();
        let max_wait = self.max_wait;
        self.jobs
            .send(Box::new(move || {
                let _slot = slot;
                let answer = (queued_at.elapsed() <= max_wait).then(f);
                let _ = tx.send(answer);
            }))
            .map_err(|_| PoolError::Lost)?;
        rx.await.map_err(|_| PoolError::Lost)?.ok_or(PoolError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = CpuPool::new(2, 8);
        assert_eq!(pool.run(|| 40 + 2).await.unwrap(), 42);
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, Err(PoolError::Lost));
        let handles: Vec<_> = (0..4u64).map(|i| pool.run(move || i * i)).collect();
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap());
        }
        assert_eq!(results, vec![0, 1, 4, 9]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_slots() {
        let pool = CpuPool::new(1, 1);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || gate.recv().is_ok()).await }
        });
        // The running job and one waiting fill the pool; a third is refused, not queued.
        while pool.slots.available_permits() > 1 {
            tokio::task::yield_now().await;
        }
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 7).await }
        });
        while pool.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 1).await, Err(PoolError::Busy));
        release.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(true));
        assert_eq!(waiting.await.unwrap(), Ok(7));
        assert_eq!(pool.run(|| 2).await, Ok(2), "slots come back");
    }

    #[tokio::test]
    async fn a_job_that_waited_too_long_is_dropped_unrun() {
        let pool = CpuPool::with_max_wait(1, 4, Duration::from_millis(20));
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slow = pool.run(|| std::thread::sleep(Duration::from_millis(200)));
        let late = pool.run({
            let ran = Arc::clone(&ran);
            move || ran.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        let (slow, late) = tokio::join!(slow, late);
        assert_eq!(slow, Ok(()));
        assert_eq!(late, Err(PoolError::Busy));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "the stale job never ran");
    }
}
