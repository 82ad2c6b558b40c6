//! A fixed pool of threads for CPU-heavy work (password hashing): as many threads as may
//! hash at once, so the async workers never stall, the queue is bounded by the callers,
//! and per-thread scratch memory (argon2's 19 MiB) is allocated once per thread, not per call.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, mpsc},
};

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Clone)]
pub struct CpuPool {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("the CPU pool dropped the job (a panic in it)")]
pub struct PoolError;

impl CpuPool {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new().name(format!("gatehouse-cpu-{i}")).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job, not while running it.
                    let job = match queue.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking job loses its answer (the caller sees PoolError), not the thread.
                        Ok(job) => drop(std::panic::catch_unwind(AssertUnwindSafe(job))),
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a CPU pool thread");
            }
        }
        CpuPool { jobs, threads }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a pool thread and awaits its result.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| PoolError)?;
        rx.await.map_err(|_| PoolError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panic() {
        let pool = CpuPool::new(2);
        assert_eq!(pool.run(|| 40 + 2).await.unwrap(), 42);
        assert!(pool.run(|| -> u8 { panic!("boom") }).await.is_err());
        let results = futures_join(&pool).await;
        assert_eq!(results, vec![0, 1, 4, 9]);
    }

    async fn futures_join(pool: &CpuPool) -> Vec<u64> {
        let mut out = Vec::new();
        let handles: Vec<_> = (0..4u64).map(|i| pool.run(move || i * i)).collect();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
