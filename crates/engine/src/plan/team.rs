//! A team of the plan's workers that spins through one run, so each step's tasks start on
//! every thread at once.
//!
//! Rayon parks a worker that finds no work for a few microseconds; waking it costs tens of
//! microseconds on these VMs (a 2-thread fork-join after 100–500 µs of serial work measured
//! 55–72 µs of overhead, against 7 µs back to back), and a plan run is ~60 parallel steps,
//! most of which end with one thread waiting for the other. For the length of one run
//! [`with_team`] keeps the other workers in a spin loop that takes the tasks the calling
//! thread publishes through [`kernels::for_each_task`](super::kernels::for_each_task); while
//! idle they still run the pool's other jobs (`rayon::yield_now`: the steps that use rayon
//! directly, another caller's run), and they return to rayon when the run ends.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Bits of the task count and of the next task index in [`Team::state`].
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// Most tasks one published step may have (larger steps go to rayon).
pub(crate) const MAX_TASKS: usize = INDEX_MASK as usize;

/// One step's tasks: the closure, borrowed from the publishing frame.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

pub(crate) struct Team {
    /// `epoch << 40 | tasks << 20 | next`: a worker claims task `next` of the current step by
    /// a compare-and-swap on the whole word, so a claim can only succeed while the step it
    /// read is still the published one (and, with `next < tasks`, not yet complete).
    state: AtomicU64,
    /// The current step's [`Job`], stored before `state` announces the step.
    job: AtomicPtr<Job<'static>>,
    /// Tasks of the current step finished.
    done: AtomicUsize,
    stop: AtomicBool,
    /// The first panic of a task, re-raised on the publishing thread.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

thread_local! {
    /// The team of the run this thread publishes steps for (null: none, or inside a task).
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    fn new() -> Team {
        Team {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
        }
    }

    /// Claims and runs tasks of the step announced by `state` until none is left.
    fn work(&self) {
        loop {
            let s = self.state.load(Ordering::Acquire);
            let (tasks, next) = ((s >> INDEX_BITS) & INDEX_MASK, s & INDEX_MASK);
            if next >= tasks {
                return;
            }
            // Stored before `state` announced this step; a later step's job is stored only
            // after this step's tasks are all done, and then the exchange below fails.
            let job = self.job.load(Ordering::Acquire);
            if self.state.compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                continue;
            }
            // SAFETY: the claim succeeded on this step's state with a task left, so the
            // publisher is still inside `run` (it waits for every claimed task) and `job`
            // is this step's, alive in its frame.
            let f = unsafe { (*job).f };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(next as usize))) {
                self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }

    /// A worker's loop: take the published tasks, else run other pool jobs, else spin.
    fn worker(&self) {
        while !self.stop.load(Ordering::Acquire) {
            self.work();
            if !matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                std::hint::spin_loop();
            }
        }
    }

    /// Publishes `f(0..tasks)` to the team, takes tasks itself, and returns when all are
    /// done (re-raising a task's panic).
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        debug_assert!(tasks <= MAX_TASKS);
        let job = Job { f };
        self.done.store(0, Ordering::Relaxed);
        // SAFETY (lifetime): workers dereference `job` only while a claimed task of this
        // step is unfinished, and this frame outlives them all (it waits below).
        self.job.store((&job as *const Job<'_>).cast_mut().cast(), Ordering::Release);
        let epoch = (self.state.load(Ordering::Relaxed) >> (2 * INDEX_BITS)) + 1;
        self.state.store(epoch << (2 * INDEX_BITS) | (tasks as u64) << INDEX_BITS, Ordering::Release);
        // Nested parallel loops inside a task run on rayon, not on this team.
        let outer = CURRENT.with(|c| c.replace(std::ptr::null()));
        self.work();
        CURRENT.with(|c| c.set(outer));
        while self.done.load(Ordering::Acquire) < tasks {
            std::hint::spin_loop();
        }
        if let Some(p) = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }
}

/// Runs `f(0..tasks)` on the calling thread's team if it has one; `false` if not (the
/// caller uses rayon).
pub(crate) fn run_tasks(tasks: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
    let team = CURRENT.with(Cell::get);
    if team.is_null() || tasks > MAX_TASKS {
        return false;
    }
    // SAFETY: `CURRENT` points at the team of an enclosing `with_team` on this thread,
    // which outlives this call (it is reset before the team is dropped).
    unsafe { (*team).run(tasks, f) };
    true
}

/// Runs `body` on the current rayon pool with the other workers of the pool spinning as its
/// team (see the module docs); without more than one thread, or inside another team's run,
/// just `body()`.
pub(crate) fn with_team<R>(body: impl FnOnce() -> R) -> R {
    let threads = rayon::current_num_threads();
    if threads <= 1 || !CURRENT.with(Cell::get).is_null() {
        return body();
    }
    let team = Team::new();
    struct Reset<'a>(&'a Team);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(std::ptr::null()));
            self.0.stop.store(true, Ordering::Release);
        }
    }
    rayon::in_place_scope(|s| {
        for _ in 1..threads {
            s.spawn(|_| team.worker());
        }
        CURRENT.with(|c| c.set(&team));
        // Stops the workers (and forgets the team) even when `body` panics, so the scope
        // can end.
        let _reset = Reset(&team);
        body()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::with_team;
    use crate::plan::kernels::for_each_task;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")
    }

    #[test]
    fn every_task_of_every_step_runs_once_and_nested_loops_still_run() {
        for threads in [1, 2, 3] {
            pool(threads).install(|| {
                with_team(|| {
                    for step in 0..300 {
                        let tasks = 1 + step % 17;
                        let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                        let inner = AtomicUsize::new(0);
                        for_each_task(tasks, |t| {
                            counts[t].fetch_add(1, Ordering::Relaxed);
                            // A nested parallel loop inside a task (runs on rayon).
                            for_each_task(3, |_| {
                                inner.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                        assert!(
                            counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                            "step {step}, {threads} threads"
                        );
                        assert_eq!(inner.load(Ordering::Relaxed), 3 * tasks);
                    }
                })
            });
        }
    }

    #[test]
    fn a_panicking_task_panics_the_run_and_the_pool_stays_usable() {
        let pool = pool(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| {
                with_team(|| {
                    for_each_task(8, |t| {
                        if t == 5 {
                            panic!("task 5");
                        }
                    })
                })
            })
        }));
        let msg = r.expect_err("the task's panic reaches the caller");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"task 5"));
        let n = AtomicUsize::new(0);
        pool.install(|| {
            with_team(|| {
                for_each_task(4, |_| {
                    n.fetch_add(1, Ordering::Relaxed);
                })
            })
        });
        assert_eq!(n.load(Ordering::Relaxed), 4);
    }
}
