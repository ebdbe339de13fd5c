//! Threads inside the target network namespace: a short-lived one per
//! [`super::Target::run_in`] call, and the long-lived [`NsWorker`].
//!
//! `setns(CLONE_NEWNET)` changes the namespace of the calling thread only,
//! and every socket (netlink included) stays in the namespace of the
//! thread that created it. So code that must act inside the namespace runs
//! on a thread that entered it, and the rest of pasta stays outside.
//!
//! Entering needs CAP_SYS_ADMIN over the namespace, which pasta started as
//! root loses when it drops to `nobody`. The worker enters at creation, and
//! a thread that has entered stays there whatever happens to the process's
//! credentials afterwards, so jobs sent to it later still run inside.
//!
//! Inside such a thread, `/proc/self` still names the whole process and
//! shows the main thread's network namespace: use `/proc/thread-self`
//! (e.g. `/proc/thread-self/net/tcp`) to see the namespace's own view.

use nix::sched::{CloneFlags, setns};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::error::NsError;

/// Move the calling thread into the network namespace `netns`.
fn enter(netns: BorrowedFd<'_>, what: &str) -> Result<(), NsError> {
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(|errno| NsError::EnterNetns {
        what: what.to_owned(),
        errno,
    })
}

/// Run `f` on a new thread that entered `netns` first; see
/// [`super::Target::run_in`].
pub(super) fn run_in<T: Send>(
    netns: BorrowedFd<'_>,
    what: &str,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NsError> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("pasta-ns-run".into())
            .spawn_scoped(s, move || enter(netns, what).map(|()| f()))
            .map_err(|e| NsError::sys("starting a namespace thread", &e))?;
        handle.join().unwrap_or_else(|panic| resume_unwind(panic))
    })
}

/// A job for the worker: runs the caller's closure and sends its outcome
/// back on a channel the caller waits on.
type Job = Box<dyn FnOnce() + Send>;

/// A long-lived thread inside the target network namespace, running
/// closures sent to it. Dropping it ends the thread after the jobs
/// already queued.
#[derive(Debug)]
pub struct NsWorker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl NsWorker {
    /// Start the thread and wait until it has entered `netns` (owned by the
    /// thread, and closed once it's inside).
    pub(super) fn start(netns: OwnedFd, what: String) -> Result<Self, NsError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("pasta-ns".into())
            .spawn(move || {
                let r = enter(netns.as_fd(), &what);
                drop(netns);
                let inside = r.is_ok();
                let _ = entered_tx.send(r);
                if inside {
                    // Ends when the NsWorker drops its sender.
                    for job in queue {
                        job();
                    }
                }
            })
            .map_err(|e| NsError::sys("starting the namespace worker", &e))?;
        match entered.recv() {
            Ok(Ok(())) => Ok(Self {
                jobs: Some(jobs),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(NsError::WorkerGone),
        }
    }

    /// Run `f` on the worker, inside the namespace, and return its result.
    /// Jobs run one at a time, in the order sent. A panic in `f` is
    /// passed on to the caller; the worker survives it.
    ///
    /// # Errors
    /// [`NsError::WorkerGone`] if the thread has exited.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NsError> {
        let (done_tx, done) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = done_tx.send(catch_unwind(AssertUnwindSafe(f)));
        });
        self.jobs
            .as_ref()
            .ok_or(NsError::WorkerGone)?
            .send(job)
            .map_err(|_| NsError::WorkerGone)?;
        match done.recv() {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => Err(NsError::WorkerGone),
        }
    }
}

impl Drop for NsWorker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
