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
//!
//! A step's tasks are cut into one contiguous range per member of the team (the publisher is
//! member 0): each member runs its own range in order, then takes what is left of the
//! others'. The kernels number their tasks along the output positions (panels of the 1×1
//! kernel, bands of the direct one, tile blocks of Winograd), so while the threads keep pace
//! each computes the same part of every plane, step after step, and reads what it wrote
//! itself. Tasks claimed in order by whoever was free mixed the parts, and half of each
//! step's input had been written by the other core — a cross-die transfer whenever the
//! hypervisor puts a 2-vCPU VM's two vCPUs on different dies (a cache line reaches the other
//! core in ~170 ns then, ~25 ns on one die: `scripts/pingpong.c`). Keras ResNet-50, fast
//! mode, batch 1, two threads on two dies, `resnet bench --profile` alternated three times:
//! the three 256 ← 64 + Add 1×1 convs 3.18–3.23 → 2.17–2.23 ms, the whole run 38.5–39.3 →
//! 37.0–37.6 ms; on one die equal (`scripts/ab_bench.py`, 6 rounds: 1.000).

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
    /// `epoch << 40 | tasks << 20`: the current step. Its tasks are cut into one contiguous
    /// range per member ([`Team::range`]); a member claims a task of range `r` by a
    /// compare-and-swap on `cursors[r]` (`epoch << 40 | next`), so a claim can only succeed
    /// while the step it read is still the published one.
    state: AtomicU64,
    /// Per range: the epoch it was reset for and the next unclaimed task of the range.
    cursors: [Padded; RANGES],
    /// Members (the publisher and the workers), 1 ..; ranges are `min(members, RANGES)`.
    members: usize,
    /// The current step's [`Job`], stored before `state` announces the step.
    job: AtomicPtr<Job<'static>>,
    /// Tasks of the current step finished.
    done: AtomicUsize,
    stop: AtomicBool,
    /// The first panic of a task, re-raised on the publishing thread.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// Most ranges a step is cut into (members past this share ranges).
const RANGES: usize = super::kernels::MAX_WORKERS;

/// One cursor on its own cache line: the members claim from their own ranges without
/// bouncing one line between the cores.
#[repr(align(64))]
struct Padded(AtomicU64);

thread_local! {
    /// The team of the run this thread publishes steps for (null: none, or inside a task).
    static CURRENT: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    fn new(members: usize) -> Team {
        Team {
            state: AtomicU64::new(0),
            cursors: std::array::from_fn(|_| Padded(AtomicU64::new(0))),
            members: members.max(1),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
        }
    }

    fn ranges(&self) -> usize {
        self.members.min(RANGES)
    }

    /// Tasks `start .. end` of range `r` of a step of `tasks`.
    fn range(&self, r: usize, tasks: u64) -> (u64, u64) {
        let (start, end) = super::kernels::task_range(r, self.ranges(), tasks as usize);
        (start as u64, end as u64)
    }

    /// Claims and runs tasks of the step announced by `state` until none is left: those of
    /// member `me`'s own range first, in order, then the others' (which keeps the same part
    /// of every step — the same output positions, for kernels that number their tasks along
    /// the positions — on the same thread while the threads keep pace).
    fn work(&self, me: usize) {
        let s = self.state.load(Ordering::Acquire);
        let (epoch, tasks) = (s >> (2 * INDEX_BITS), (s >> INDEX_BITS) & INDEX_MASK);
        let ranges = self.ranges();
        for i in 0..ranges {
            let r = (me + i) % ranges;
            let (start, end) = self.range(r, tasks);
            let cursor = &self.cursors[r].0;
            loop {
                let c = cursor.load(Ordering::Acquire);
                if c >> (2 * INDEX_BITS) != epoch || start + (c & INDEX_MASK) >= end {
                    break;
                }
                // Stored before `state` announced this step; a later step's job is stored
                // only after this step's tasks are all done, and then the exchange fails.
                let job = self.job.load(Ordering::Acquire);
                if cursor.compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                    continue;
                }
                // SAFETY: the claim succeeded on this step's cursor with a task left, so
                // the publisher is still inside `run` (it waits for every claimed task) and
                // `job` is this step's, alive in its frame.
                let f = unsafe { (*job).f };
                let task = (start + (c & INDEX_MASK)) as usize;
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(task))) {
                    self.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
                }
                self.done.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// A worker's loop: take the published tasks, else run other pool jobs, else spin.
    fn worker(&self, me: usize) {
        while !self.stop.load(Ordering::Acquire) {
            self.work(me);
            if !matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                std::hint::spin_loop();
            }
        }
    }

    /// Publishes `f(0..tasks)` to the team, takes tasks itself (member 0), and returns when
    /// all are done (re-raising a task's panic).
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        debug_assert!(tasks <= MAX_TASKS);
        let job = Job { f };
        self.done.store(0, Ordering::Relaxed);
        // SAFETY (lifetime): workers dereference `job` only while a claimed task of this
        // step is unfinished, and this frame outlives them all (it waits below).
        self.job.store((&job as *const Job<'_>).cast_mut().cast(), Ordering::Release);
        let epoch = (self.state.load(Ordering::Relaxed) >> (2 * INDEX_BITS)) + 1;
        for c in &self.cursors[..self.ranges()] {
            c.0.store(epoch << (2 * INDEX_BITS), Ordering::Relaxed);
        }
        self.state.store(epoch << (2 * INDEX_BITS) | (tasks as u64) << INDEX_BITS, Ordering::Release);
        // Nested parallel loops inside a task run on rayon, not on this team.
        let outer = CURRENT.with(|c| c.replace(std::ptr::null()));
        self.work(0);
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
    let team = Team::new(threads);
    struct Reset<'a>(&'a Team);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(std::ptr::null()));
            self.0.stop.store(true, Ordering::Release);
        }
    }
    rayon::in_place_scope(|s| {
        for me in 1..threads {
            let team = &team;
            s.spawn(move |_| team.worker(me));
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

    use super::{with_team, Team};
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

    #[test]
    fn a_member_runs_its_own_range_first_then_takes_the_others_tasks() {
        // Alone (no worker started): member 0's range in order, then member 1's and 2's.
        let team = Team::new(3);
        let order = std::sync::Mutex::new(Vec::new());
        team.run(10, &|t| order.lock().unwrap().push(t));
        assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
        // Two members: each runs its own range's tasks, in order, while it has them. Task 0
        // (the publisher's) waits until task 4 (the worker's first) has started, and task 4
        // until task 1 has: with the tasks claimed in order by whoever is free (the team
        // before ranges), the worker took task 1 while the publisher was in task 0. Waits
        // end after 10 s at most.
        let started: Vec<AtomicUsize> = (0..8).map(|_| AtomicUsize::new(0)).collect();
        let ran_on: Vec<std::sync::Mutex<Option<std::thread::ThreadId>>> =
            (0..8).map(|_| std::sync::Mutex::new(None)).collect();
        let wait_for = |t: usize| {
            let t0 = std::time::Instant::now();
            while started[t].load(Ordering::Acquire) == 0 && t0.elapsed() < std::time::Duration::from_secs(10) {
                std::hint::spin_loop();
            }
        };
        pool(2).install(|| {
            let publisher = std::thread::current().id();
            with_team(|| {
                for_each_task(8, |t| {
                    *ran_on[t].lock().unwrap() = Some(std::thread::current().id());
                    started[t].store(1, Ordering::Release);
                    match t {
                        0 => wait_for(4),
                        4 => wait_for(1),
                        _ => {}
                    }
                });
            });
            let on = |t: usize| ran_on[t].lock().unwrap().expect("every task ran");
            assert_eq!((on(0), on(1)), (publisher, publisher), "the publisher runs its own range");
            assert_ne!(on(4), publisher, "the worker runs its own range");
        });
    }
}
