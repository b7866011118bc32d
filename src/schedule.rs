//! Running a batch's jobs on a fixed number of worker threads, results in input order. A job may come back
//! waiting for another one (a grid revision whose W another worker is fetching): it is run again as soon as that
//! one has returned, ahead of jobs not started yet, so waiting never holds a worker. Owns the order and the
//! waiting; not what a job does, nor when it must wait (the caller's `waits_for`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

/// What a batch's jobs are to the scheduler.
pub(crate) struct Batch<'a, T, R> {
    /// A job's name: what another job's `waits_for` names.
    pub(crate) name: &'a (dyn Fn(&T) -> String + Sync),
    /// Runs a job, given what its previous run returned (if it waited).
    pub(crate) run: &'a (dyn Fn(&T, Option<R>) -> R + Sync),
    /// The job a result waits for, if it must run again once that one has returned.
    pub(crate) waits_for: &'a (dyn Fn(&R) -> Option<String> + Sync),
    /// Called once a job named so has returned (or, should one be waited for that never runs, in its place):
    /// whatever it held for the jobs waiting on it is to be let go.
    pub(crate) returned: &'a (dyn Fn(&str) + Sync),
}

struct State<R> {
    next: usize,
    ready: VecDeque<usize>,
    parked: HashMap<String, Vec<usize>>,
    returned: HashSet<String>,
    running: usize,
    results: Vec<Option<R>>,
}

/// Runs every item on `workers` threads (jobs get their own threads, so that frames can use rayon's global
/// pool for their own work whatever `--jobs` is). A job whose result waits for another is parked until that
/// one has returned, then run again before new jobs start; the result kept is its last run's.
pub(crate) fn run<T: Sync, R: Send>(items: &[T], workers: usize, batch: &Batch<'_, T, R>) -> Vec<R> {
    let state = Mutex::new(State {
        next: 0,
        ready: VecDeque::new(),
        parked: HashMap::new(),
        returned: HashSet::new(),
        running: 0,
        results: items.iter().map(|_| None).collect(),
    });
    let wake = Condvar::new();
    let lock = || state.lock().expect("scheduler state is never poisoned");
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                let mut st = lock();
                loop {
                    let i = if let Some(i) = st.ready.pop_front() {
                        i
                    } else if st.next < items.len() {
                        st.next += 1;
                        st.next - 1
                    } else if st.running > 0 {
                        st = wake.wait(st).expect("scheduler state is never poisoned");
                        continue;
                    } else if let Some(by) = st.parked.keys().next().cloned() {
                        // Nothing runs and nothing is queued, yet jobs wait for `by`: it never ran, so nothing it
                        // holds will be let go unless we say so. (Not expected: a job waits only for one that ran.)
                        (batch.returned)(&by);
                        let waiting = st.parked.remove(&by).unwrap_or_default();
                        st.returned.insert(by);
                        st.ready.extend(waiting);
                        continue;
                    } else {
                        wake.notify_all();
                        break;
                    };
                    st.running += 1;
                    let previous = st.results[i].take();
                    drop(st);
                    let item = &items[i];
                    let result = (batch.run)(item, previous);
                    let name = (batch.name)(item);
                    (batch.returned)(&name);
                    st = lock();
                    st.running -= 1;
                    if let Some(waiting) = st.parked.remove(&name) {
                        st.ready.extend(waiting);
                    }
                    st.returned.insert(name);
                    match (batch.waits_for)(&result) {
                        Some(by) if !st.returned.contains(&by) => st.parked.entry(by).or_default().push(i),
                        Some(_) => st.ready.push_back(i),
                        None => {}
                    }
                    st.results[i] = Some(result);
                    wake.notify_all();
                }
            });
        }
    });
    let st = state.into_inner().expect("scheduler state is never poisoned");
    st.results.into_iter().map(|r| r.expect("every item ran")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn plain<R>(items: &[u64], workers: usize, f: impl Fn(&u64) -> R + Sync) -> Vec<R>
    where
        R: Send,
    {
        let run = |i: &u64, _: Option<R>| f(i);
        run_batch(items, workers, &u64::to_string, &run, &|_| None, &|_| {})
    }

    fn run_batch<R: Send>(
        items: &[u64],
        workers: usize,
        name: &(dyn Fn(&u64) -> String + Sync),
        run: &(dyn Fn(&u64, Option<R>) -> R + Sync),
        waits_for: &(dyn Fn(&R) -> Option<String> + Sync),
        returned: &(dyn Fn(&str) + Sync),
    ) -> Vec<R> {
        super::run(items, workers, &Batch { name, run, waits_for, returned })
    }

    #[test]
    fn results_come_back_in_input_order_whatever_the_workers() {
        let items: Vec<u64> = (0..24).collect();
        for workers in [1, 2, 5, 64] {
            // Later items finish first: order must come from the input, not from completion.
            let out = plain(&items, workers, |&i| {
                std::thread::sleep(std::time::Duration::from_millis((24 - i) % 5));
                i * 10
            });
            assert_eq!(out, items.iter().map(|i| i * 10).collect::<Vec<_>>(), "{workers} workers");
        }
        assert!(plain(&[], 4, |_| 0).is_empty());
    }

    /// Item 0 is slow; items 1..8 wait for it the first time they run. They must run again once 0 has
    /// returned (not before, not never), and jobs not started yet must not wait behind them.
    #[test]
    fn a_waiting_job_runs_again_once_the_one_it_waits_for_has_returned() {
        let items: Vec<u64> = (0..16).collect();
        let zero_done = std::sync::atomic::AtomicBool::new(false);
        let runs = AtomicUsize::new(0);
        for workers in [2, 4] {
            zero_done.store(false, Ordering::SeqCst);
            runs.store(0, Ordering::SeqCst);
            // A result: (item, zero had returned when it ran, how many runs it took).
            let run = |&i: &u64, prev: Option<(u64, bool, usize)>| {
                runs.fetch_add(1, Ordering::SeqCst);
                if i == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(60));
                }
                (i, zero_done.load(Ordering::SeqCst), prev.map_or(1, |p| p.2 + 1))
            };
            let waits_for = |r: &(u64, bool, usize)| (r.0 > 0 && r.0 < 8 && !r.1).then(|| "0".to_string());
            let returned = |n: &str| {
                if n == "0" {
                    zero_done.store(true, Ordering::SeqCst);
                }
            };
            let out = run_batch(&items, workers, &u64::to_string, &run, &waits_for, &returned);
            for (i, (item, after_zero, tries)) in out.iter().enumerate() {
                assert_eq!(*item, i as u64);
                if (1..8).contains(item) {
                    assert!(after_zero, "item {item} kept a result from before 0 returned");
                    assert!(*tries <= 2, "item {item} ran {tries} times");
                }
            }
            assert!(runs.load(Ordering::SeqCst) <= 16 + 7, "{workers} workers: too many runs");
        }
    }

    /// A job waiting for a name that never runs is not left parked forever: it is let go and run again.
    #[test]
    fn a_job_waiting_for_one_that_never_runs_is_released() {
        let items: Vec<u64> = vec![0, 1];
        let released = std::sync::Mutex::new(Vec::<String>::new());
        let run = |&i: &u64, prev: Option<(u64, usize)>| (i, prev.map_or(1, |p| p.1 + 1));
        let waits_for = |r: &(u64, usize)| {
            let ghost_gone = released.lock().unwrap().iter().any(|n| n == "ghost");
            (r.0 == 1 && !ghost_gone).then(|| "ghost".to_string())
        };
        let returned = |n: &str| released.lock().unwrap().push(n.to_string());
        let out = run_batch(&items, 2, &u64::to_string, &run, &waits_for, &returned);
        assert_eq!(out, vec![(0, 1), (1, 2)]);
        assert!(released.lock().unwrap().iter().any(|n| n == "ghost"));
    }
}
