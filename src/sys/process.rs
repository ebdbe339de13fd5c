//! Process helpers for namespace set-up: forking a child that runs a
//! closure, pidfds, and the signal state a command expects at `exec`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::Forked;

/// Exit status of a forked child whose closure panicked (as Rust's own
/// runtime uses for a panicking `main`).
const PANIC_EXIT: i32 = 101;

/// Fork, run `f` in the child and end the child with `f`'s return value as
/// its exit status. Returns the child's PID in the parent.
///
/// The child never returns into the caller's code: after `f` it leaves
/// with `_exit`, so destructors of the caller's frames (copied by `fork`)
/// never run twice, and stdio buffers inherited from the parent are not
/// flushed twice. A panic in `f` ends the child with status 101.
///
/// Whatever `f` captures is dropped in the parent right after the fork,
/// and consumed by `f` in the child: moving the child's end of a pipe into
/// `f` thus closes it in the parent for free.
///
/// Like [`super::fork`], only call this while single-threaded.
///
/// # Errors
/// The `fork()` error (then `f` is dropped without running).
pub fn fork_child<F: FnOnce() -> i32>(f: F) -> io::Result<i32> {
    match super::fork()? {
        Forked::Parent(pid) => {
            drop(f);
            Ok(pid)
        }
        Forked::Child => {
            let code = catch_unwind(AssertUnwindSafe(f)).unwrap_or(PANIC_EXIT);
            exit_now(code)
        }
    }
}

/// End the process at once with `code`, without running destructors,
/// `atexit` handlers or flushing stdio: what a forked child must do.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit() has no preconditions; it terminates the process and
    // never returns, so no Rust state can be observed half-updated.
    unsafe { libc::_exit(code) }
}

/// Open a pidfd for process `pid` (`pidfd_open(2)`, Linux 5.3): it becomes
/// readable once the process has exited, and can't be confused with a
/// later process that reuses the number.
///
/// # Errors
/// `ESRCH` if there is no such process, `EINVAL` for a thread ID or a
/// non-positive `pid`, `ENOSYS` on kernels before 5.3.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: pidfd_open takes two integers and returns a new descriptor
    // (close-on-exec by default) or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else
    // refers to it, so we may own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Give the calling thread the signal state a freshly started program
/// expects: nothing blocked, every signal at its default action.
///
/// `exec` keeps both the signal mask and ignored signals, so without this a
/// command would inherit the exit signals we block for our signalfd and
/// Rust's `SIGPIPE` = ignore. Meant for a forked child right before `exec`.
///
/// # Errors
/// `sigprocmask` failure. Signals whose action can't be changed (`SIGKILL`,
/// `SIGSTOP`, the C library's internal real-time signals) are skipped.
pub fn reset_signals_for_exec() -> io::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    // SAFETY: an all-zero sigaction is a valid value (handler SIG_DFL,
    // empty mask, no flags); we only fill in fields of a local struct.
    let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    dfl.sa_sigaction = libc::SIG_DFL;
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code of ours in signal
        // context; `dfl` is a valid sigaction living across the call and
        // the old action is not requested. Failures (EINVAL for signals
        // reserved by the C library) are ignored on purpose.
        unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}
