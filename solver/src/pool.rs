//! Runs analysis jobs on every rayon worker, each with its own Z3 context and encoding.
//!
//! Z3 terms belong to the thread that made them (the binding's contexts are thread-local), so
//! the encoding cannot be shared: every worker builds one, then pulls jobs from a shared
//! counter until none are left. Results come back in job order, so the output does not
//! depend on scheduling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Reports `(done, total)` as jobs finish; called from worker threads.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Runs `work` on every job. `setup` builds a worker's state once per thread; an error from
/// it or from any job stops the run (other workers finish their current job).
pub fn run_jobs<J, W, R, E>(
    jobs: &[J],
    setup: impl Fn() -> Result<W, E> + Sync,
    work: impl Fn(&W, &J) -> Result<R, E> + Sync,
    progress: Progress,
) -> Result<Vec<R>, E>
where
    J: Sync,
    R: Send,
    E: Send,
{
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let failure: Mutex<Option<E>> = Mutex::new(None);
    let failed = || failure.lock().map(|f| f.is_some()).unwrap_or(true);
    let fail = |error: E| {
        if let Ok(mut slot) = failure.lock() {
            slot.get_or_insert(error);
        }
    };
    rayon::broadcast(|_| {
        if next.load(Ordering::Relaxed) >= jobs.len() {
            return;
        }
        let state = match setup() {
            Ok(state) => state,
            Err(error) => return fail(error),
        };
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= jobs.len() || failed() {
                return;
            }
            match work(&state, &jobs[index]) {
                Ok(result) => {
                    if let Ok(mut results) = results.lock() {
                        results.push((index, result));
                    }
                }
                Err(error) => return fail(error),
            }
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
        }
    });
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(index, _)| *index);
    Ok(results.into_iter().map(|(_, result)| result).collect())
}
