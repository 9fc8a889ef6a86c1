//! [`JobQueue`]: the bounded queue in front of one model's workers.
//!
//! Admission happens when a request arrives, before its image is decoded: the request takes a
//! [`Slot`] (or gets 503 when `queue_depth` slots are taken) and turns it into a queued job;
//! a slot dropped unused is released. So an overloaded server refuses work without spending
//! CPU on it, and the depth that `/metrics` shows counts every admitted request not yet taken
//! by a worker.
//!
//! Workers take batches: the first job waits for up to `max_batch_delay` (counted from its
//! arrival in the queue) for more, until the batch holds `batch_size` images.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Something a worker runs: `images()` rows of the model input.
pub trait Batchable {
    fn images(&self) -> usize;
}

struct State<J> {
    jobs: VecDeque<(Instant, J)>,
    reserved: usize,
    capacity: usize,
    closed: bool,
}

/// A multi-producer, multi-consumer bounded queue with reservations.
pub struct JobQueue<J> {
    state: Mutex<State<J>>,
    changed: Condvar,
}

/// Refused: the queue holds `capacity` admitted requests already (or is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Full { capacity: usize },
    Closed,
}

/// An admitted request's place in the queue; released when dropped without [`Slot::push`].
pub struct Slot<J> {
    queue: Arc<JobQueue<J>>,
    used: bool,
}

impl<J: Batchable> JobQueue<J> {
    pub fn new(capacity: usize) -> Arc<JobQueue<J>> {
        Arc::new(JobQueue {
            state: Mutex::new(State { jobs: VecDeque::new(), reserved: 0, capacity, closed: false }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // A worker that panicked while holding the lock left consistent data (every update
        // is a single push/pop/counter change), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one request, or says why not.
    pub fn reserve(self: &Arc<Self>) -> Result<Slot<J>, Refused> {
        let mut s = self.lock();
        if s.closed {
            return Err(Refused::Closed);
        }
        if s.jobs.len() + s.reserved >= s.capacity {
            return Err(Refused::Full { capacity: s.capacity });
        }
        s.reserved += 1;
        Ok(Slot { queue: self.clone(), used: false })
    }

    /// Admitted requests not yet taken by a worker (reserved + queued).
    pub fn depth(&self) -> usize {
        let s = self.lock();
        s.jobs.len() + s.reserved
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Refuses new requests from now on; queued jobs are still handed out, then
    /// [`JobQueue::take_batch`] returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Wakes waiting workers (to notice a stop flag or new settings).
    pub fn wake_all(&self) {
        self.changed.notify_all();
    }

    /// Blocks for the next batch: the oldest job, plus the jobs that arrive within
    /// `max_delay` of its arrival, while they fit in `batch_size` images (a job larger than
    /// `batch_size` runs alone). `None` when the queue is closed and empty, or `stop` is set.
    pub fn take_batch(&self, batch_size: usize, max_delay: Duration, stop: &AtomicBool) -> Option<Vec<J>> {
        let mut s = self.lock();
        // Wait for the first job.
        let first_arrival = loop {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            if let Some((arrived, _)) = s.jobs.front() {
                break *arrived;
            }
            if s.closed {
                return None;
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        };
        let deadline = first_arrival + max_delay;
        // Wait until the batch would be full or the first job's delay is over.
        loop {
            let queued_images = s.jobs.iter().map(|(_, j)| j.images()).sum::<usize>();
            let now = Instant::now();
            if queued_images >= batch_size || now >= deadline || s.closed || stop.load(Ordering::SeqCst) {
                break;
            }
            s = self.changed.wait_timeout(s, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            if s.jobs.is_empty() {
                // Another worker took them; start over.
                drop(s);
                return self.take_batch(batch_size, max_delay, stop);
            }
        }
        let mut batch = Vec::new();
        let mut images = 0;
        while let Some((_, job)) = s.jobs.front() {
            let n = job.images();
            if !batch.is_empty() && images + n > batch_size {
                break;
            }
            images += n;
            batch.push(s.jobs.pop_front().expect("front exists").1);
        }
        if !s.jobs.is_empty() {
            self.changed.notify_one(); // another worker can start on the rest
        }
        Some(batch)
    }
}

impl<J: Batchable> Slot<J> {
    /// Queues the job in the admitted place.
    pub fn push(mut self, job: J) {
        let mut s = self.queue.lock();
        s.reserved -= 1;
        s.jobs.push_back((Instant::now(), job));
        self.used = true;
        drop(s);
        self.queue.changed.notify_one();
    }
}

impl<J> Drop for Slot<J> {
    fn drop(&mut self) {
        if !self.used {
            let mut s = self.queue.state.lock().unwrap_or_else(|p| p.into_inner());
            s.reserved -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Images(usize);
    impl Batchable for Images {
        fn images(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn admission_counts_reserved_and_queued_and_releases_dropped_slots() {
        let q = JobQueue::<Images>::new(2);
        let a = q.reserve().unwrap();
        let b = q.reserve().unwrap();
        assert_eq!(q.reserve().err(), Some(Refused::Full { capacity: 2 }));
        a.push(Images(1));
        assert_eq!(q.depth(), 2);
        drop(b);
        assert_eq!(q.depth(), 1);
        assert!(q.reserve().is_ok());
        q.close();
        assert_eq!(q.reserve().err(), Some(Refused::Closed));
    }

    #[test]
    fn batches_fill_up_to_batch_size_images_and_an_oversized_job_runs_alone() {
        let q = JobQueue::new(10);
        for n in [1, 2, 3, 9, 1] {
            q.reserve().unwrap().push(Images(n));
        }
        let stop = AtomicBool::new(false);
        let sizes = |b: Vec<Images>| b.iter().map(|j| j.0).collect::<Vec<_>>();
        let d = Duration::ZERO;
        assert_eq!(sizes(q.take_batch(4, d, &stop).unwrap()), vec![1, 2]);
        assert_eq!(sizes(q.take_batch(4, d, &stop).unwrap()), vec![3]);
        assert_eq!(sizes(q.take_batch(4, d, &stop).unwrap()), vec![9]);
        assert_eq!(sizes(q.take_batch(4, d, &stop).unwrap()), vec![1]);
        q.close();
        assert!(q.take_batch(4, d, &stop).is_none());
    }

    #[test]
    fn the_first_job_waits_at_most_the_batch_delay_for_company() {
        let q = JobQueue::new(10);
        q.reserve().unwrap().push(Images(1));
        let stop = AtomicBool::new(false);
        let start = Instant::now();
        let batch = q.take_batch(8, Duration::from_millis(50), &stop).unwrap();
        let waited = start.elapsed();
        assert_eq!(batch.len(), 1);
        assert!(waited >= Duration::from_millis(40) && waited < Duration::from_secs(2), "{waited:?}");

        // A job arriving during the delay joins the batch.
        q.reserve().unwrap().push(Images(1));
        let q2 = q.clone();
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            q2.reserve().unwrap().push(Images(1));
        });
        let batch = q.take_batch(8, Duration::from_millis(500), &stop).unwrap();
        pusher.join().unwrap();
        assert_eq!(batch.len(), 2);
    }
}
