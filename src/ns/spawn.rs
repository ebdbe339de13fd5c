//! The command pasta runs in new namespaces, and the two helper processes
//! between us and it.
//!
//! # Theory of operation
//!
//! ```text
//! pasta ──fork──▶ helper ──unshare(user, net, IPC, UTS, mount, PID)
//!                   │        … waits on the "go" pipe until release() …
//!                   └─fork──▶ init (PID 1 in the new PID namespace)
//!                               └─fork──▶ command (PID 2) ──exec
//! ```
//!
//! - **helper** stays in our PID namespace: `unshare(CLONE_NEWPID)` only
//!   moves the *children* of the caller, so someone outside has to fork
//!   the first process inside. It is pasta's direct child, so pasta can
//!   wait for it and hold a pidfd on it; it exits with the command's
//!   status. Between `unshare` and "go", pasta writes its UID/GID maps
//!   (that must be done from the parent user namespace), opens its
//!   namespace files, and configures the network.
//! - **init** is PID 1 of the new PID namespace. It mounts a fresh `/proc`
//!   (so `ps` inside shows the namespace's processes) and reaps orphans
//!   until the command ends. The command is not PID 1 itself because the
//!   kernel shields PID 1 from signals it has no handler for: `kill -9 $$`
//!   or Ctrl-C would be ignored by a shell running as PID 1.
//! - **command** resets its signal state (we block signals for our
//!   signalfd, and Rust ignores `SIGPIPE`; both survive `exec`) and execs.
//!
//! Life cycle: helper and init ask for `SIGKILL` when their parent dies
//! (`PR_SET_PDEATHSIG`). If pasta dies, the helper dies, init dies, and
//! when the PID 1 of a namespace dies the kernel kills every other process
//! in it: nothing is left behind. The helper checks its parent right after
//! `prctl`, closing the window where pasta died before the request.
//! `PR_SET_PDEATHSIG` fires when the parent *thread* ends, so pasta must
//! keep the thread that called `prepare` (its main thread) until the end.
//!
//! Exit status: init turns the command's end into an exit code (its status,
//! or 128 + signal if it was killed, like a shell), and the helper passes
//! it on, so pasta can exit with it.
//!
//! `exec` failures travel back on a close-on-exec pipe: the command writes
//! the errno if `execvp` fails; a successful `exec` closes the pipe, so
//! end-of-file means the command is running.

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::cell::Cell;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::error::{NsError, errno_of};
use crate::sys::process::{fork_child, pidfd_open, reset_signals_for_exec};

/// What to run and in which new namespaces.
#[derive(Debug)]
pub(super) struct Plan {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    argv: Vec<CString>,
    /// `argv[0]` as given, for messages.
    cmd: String,
    /// Namespaces the helper creates.
    flags: CloneFlags,
}

impl Plan {
    /// Run `cmd`, or the user's shell (`$SHELL`, else `/bin/sh`) if empty,
    /// in new network, IPC, UTS, mount and PID namespaces, plus a user
    /// namespace if `new_userns`.
    ///
    /// # Errors
    /// [`NsError::Exec`] with `EINVAL` for an argument containing a NUL.
    pub(super) fn new(cmd: &[String], new_userns: bool) -> Result<Self, NsError> {
        let words: Vec<String> = if cmd.is_empty() {
            // Read here, not in the child: nothing environment-related
            // should run between fork and exec.
            vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".to_owned())]
        } else {
            cmd.to_vec()
        };
        let name = words[0].clone();
        let argv = words
            .into_iter()
            .map(CString::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| NsError::Exec {
                cmd: name.clone(),
                errno: Errno::EINVAL,
            })?;
        let mut flags = CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID;
        if new_userns {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        Ok(Self {
            argv,
            cmd: name,
            flags,
        })
    }

    /// Whether a user namespace is created.
    pub(super) fn new_userns(&self) -> bool {
        self.flags.contains(CloneFlags::CLONE_NEWUSER)
    }
}

/// The spawned command, seen from pasta: in fact the helper process that
/// waits for it (see the module documentation).
#[derive(Debug)]
pub struct Spawned {
    /// The helper's PID in our PID namespace.
    pid: Pid,
    /// Readable once the helper has exited.
    pidfd: OwnedFd,
    /// Writing one byte lets the helper start the command.
    go: Option<File>,
    /// End-of-file once the command has been executed; an errno if not.
    exec_status: Option<File>,
    /// The command's name, for messages.
    cmd: String,
    /// Exit code, once reaped.
    code: Option<i32>,
}

/// Fork the helper, let it create the namespaces, and wait until it has.
///
/// Must be called single-threaded (it forks).
///
/// # Errors
/// Pipe, fork or pidfd failures, [`NsError::HelperDied`]; an `unshare`
/// failure comes back as [`NsError::Create`] with the raw errno, for the
/// caller to diagnose.
pub(super) fn start(plan: &Plan) -> Result<Spawned, NsError> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| NsError::Sys {
            op: "creating a pipe",
            errno,
        })
    };
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (exec_r, exec_w) = pipe()?;
    let parent = nix::unistd::getpid();
    // The child's ends move into the closure: closed here right after the
    // fork, owned by the helper there.
    let pid = fork_child(move || helper(parent, plan, ready_w, go_r, exec_w))
        .map_err(|e| NsError::sys("forking the namespace helper", &e))?;
    let pid = Pid::from_raw(pid);
    let pidfd = match pidfd_open(pid.as_raw()) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(NsError::sys("opening a pidfd for the namespace helper", &e));
        }
    };
    // From here on, dropping `child` kills and reaps the helper.
    let mut child = Spawned {
        pid,
        pidfd,
        go: Some(File::from(go_w)),
        exec_status: Some(File::from(exec_r)),
        cmd: plan.cmd.clone(),
        code: None,
    };
    let mut word = [0u8; 4];
    match File::from(ready_r).read_exact(&mut word) {
        Ok(()) => match i32::from_ne_bytes(word) {
            0 => Ok(child),
            e => Err(NsError::Create(Errno::from_raw(e))),
        },
        Err(_) => {
            let how = match child.wait() {
                Ok(code) => format!("exit code {code}"),
                Err(e) => e.to_string(),
            };
            Err(NsError::HelperDied(how))
        }
    }
}

impl Spawned {
    /// The helper's PID (in our PID namespace). The command itself runs as
    /// PID 2 of its own PID namespace; killing the helper kills it too.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// A pidfd on the helper: readable once the command has ended and the
    /// helper has exited with its status.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Let the command start, and wait until it has been executed.
    /// Further calls do nothing.
    ///
    /// # Errors
    /// [`NsError::Exec`] if the command could not be executed (e.g.
    /// `ENOENT`); the helper then exits with 127 (not found) or 126.
    pub fn release(&mut self) -> Result<(), NsError> {
        if let Some(mut go) = self.go.take() {
            // EPIPE means the helper is gone already; wait() will tell how.
            let _ = go.write_all(b"g");
        }
        let Some(mut status) = self.exec_status.take() else {
            return Ok(());
        };
        let mut buf = Vec::with_capacity(4);
        let _ = status.read_to_end(&mut buf);
        match buf.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
            Some(word) => Err(NsError::Exec {
                cmd: self.cmd.clone(),
                errno: Errno::from_raw(i32::from_ne_bytes(word)),
            }),
            None => Ok(()),
        }
    }

    /// Wait for the command to end and return the code pasta should exit
    /// with: the command's exit status, or 128 + signal number if it was
    /// killed. Releases the command first if that wasn't done yet (it
    /// could never end otherwise), ignoring an `exec` failure, whose exit
    /// code (127 or 126) is returned.
    ///
    /// # Errors
    /// `waitpid` failure.
    pub fn wait(&mut self) -> Result<i32, NsError> {
        let _ = self.release();
        // Without WNOHANG, waitpid only returns once the helper has ended.
        self.reap(WaitPidFlag::empty())?.ok_or(NsError::Sys {
            op: "waiting for the command",
            errno: Errno::ECHILD,
        })
    }

    /// Like [`Spawned::wait`] but without blocking: `None` while the
    /// command runs. Doesn't release the command.
    ///
    /// # Errors
    /// `waitpid` failure.
    pub fn try_wait(&mut self) -> Result<Option<i32>, NsError> {
        self.reap(WaitPidFlag::WNOHANG)
    }

    fn reap(&mut self, flags: WaitPidFlag) -> Result<Option<i32>, NsError> {
        if self.code.is_some() {
            return Ok(self.code);
        }
        loop {
            match waitpid(self.pid, Some(flags)) {
                Ok(WaitStatus::StillAlive) => return Ok(None),
                Ok(status) => {
                    if let Some(code) = exit_code(status) {
                        self.code = Some(code);
                        return Ok(self.code);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(errno) => {
                    return Err(NsError::Sys {
                        op: "waiting for the command",
                        errno,
                    });
                }
            }
        }
    }
}

impl Drop for Spawned {
    /// Don't leave the command behind: kill the helper (which takes init
    /// and the whole PID namespace with it) and reap it.
    fn drop(&mut self) {
        if self.code.is_none() {
            let _ = kill(self.pid, Signal::SIGKILL);
            while let Err(Errno::EINTR) = waitpid(self.pid, None) {}
        }
    }
}

/// The shell's convention for how a process ended: its exit status, or
/// 128 + the signal that killed it. `None` for stops and continues.
fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Write an errno on an `exec` status pipe.
fn report(fd: &OwnedFd, errno: Errno) {
    let _ = nix::unistd::write(fd, &(errno as i32).to_ne_bytes());
}

/// Wait for our child `pid` and return its exit code.
fn wait_code(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return code;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return 1,
        }
    }
}

/// The helper (forked from pasta): create the namespaces, report, wait for
/// "go", fork init, and exit with the command's code.
fn helper(parent: Pid, plan: &Plan, ready: OwnedFd, go: OwnedFd, exec_w: OwnedFd) -> i32 {
    use nix::sys::prctl::set_pdeathsig;
    // If pasta died before the prctl took effect we've been reparented.
    if set_pdeathsig(Signal::SIGKILL).is_err() || nix::unistd::getppid() != parent {
        return 1;
    }
    let word: i32 = match nix::sched::unshare(plan.flags) {
        Ok(()) => 0,
        Err(e) => e as i32,
    };
    if nix::unistd::write(&ready, &word.to_ne_bytes()) != Ok(4) || word != 0 {
        return 1;
    }
    drop(ready);
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(&go, &mut b) {
            Ok(1) => break,
            Err(Errno::EINTR) => {}
            // Anything but the byte: don't start a command nobody serves.
            _ => return 1,
        }
    }
    drop(go);
    // Whoever runs the closure takes the pipe out of the slot; the other
    // side still finds it there, so each process owns exactly one copy.
    let slot = Cell::new(Some(exec_w));
    let forked = fork_child(|| init(plan, slot.take()));
    let exec_w = slot.take();
    match forked {
        Ok(pid) => {
            drop(exec_w);
            wait_code(Pid::from_raw(pid))
        }
        Err(e) => {
            if let Some(w) = exec_w {
                report(&w, errno_of(&e));
            }
            1
        }
    }
}

/// PID 1 of the new PID namespace: mount `/proc`, fork the command, reap
/// until it has ended, and exit with its code (which ends the namespace).
fn init(plan: &Plan, exec_w: Option<OwnedFd>) -> i32 {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    mount_proc();
    let slot = Cell::new(exec_w);
    let forked = fork_child(|| run_command(plan, slot.take()));
    let exec_w = slot.take();
    let command = match forked {
        Ok(pid) => {
            drop(exec_w);
            Pid::from_raw(pid)
        }
        Err(e) => {
            if let Some(w) = exec_w {
                report(&w, errno_of(&e));
            }
            return 1;
        }
    };
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) if status.pid() == Some(command) => {
                if let Some(code) = exit_code(status) {
                    return code;
                }
            }
            // An orphan of the command's, reaped as PID 1 must.
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 1,
        }
    }
}

/// Mount a `/proc` of the new PID namespace, so tools inside see their own
/// processes. Best effort: the kernel refuses it in a user namespace when
/// parts of the current `/proc` are hidden by over-mounts, as container
/// runtimes do; the command then sees the old `/proc`.
fn mount_proc() {
    use nix::mount::{MsFlags, mount};
    // First make every mount a slave: without a new user namespace
    // (--netns-only as root) mounts may still be shared with ours, and
    // the new /proc would replace the host's.
    let none: Option<&str> = None;
    if mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none).is_err() {
        return;
    }
    let _ = mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    );
}

/// The command's process: reset signals and exec; report the errno if that
/// fails and exit like a shell would (127: not found, 126: not runnable).
fn run_command(plan: &Plan, exec_w: Option<OwnedFd>) -> i32 {
    let _ = reset_signals_for_exec();
    let Err(errno) = nix::unistd::execvp(&plan.argv[0], &plan.argv);
    if let Some(w) = exec_w {
        report(&w, errno);
    }
    if errno == Errno::ENOENT { 127 } else { 126 }
}

/// Write the command's UID and GID maps: our effective IDs become root
/// inside. Done from our side (the parent user namespace): as root we have
/// CAP_SETUID/CAP_SETGID there, so `setgroups` stays allowed inside; an
/// unprivileged user may only map its own IDs, and must deny `setgroups`
/// first (`user_namespaces(7)`).
///
/// # Errors
/// [`NsError::IdMap`] naming the file.
pub(super) fn write_id_maps(pid: u32, deny_setgroups: bool) -> Result<(), NsError> {
    let write = |file: &str, text: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            // One write() call: the kernel takes a map in one piece only.
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| NsError::IdMap {
                path,
                errno: errno_of(&e),
            })
    };
    if deny_setgroups {
        write("setgroups", "deny".to_owned())?;
    }
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("gid_map", format!("0 {gid} 1\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 7)), Some(7));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn plan_defaults_to_a_shell_and_rejects_nul() {
        let p = Plan::new(&[], true).unwrap();
        assert_eq!(p.argv.len(), 1);
        assert!(p.new_userns());
        let p = Plan::new(&["sh".into(), "-c".into(), "true".into()], false).unwrap();
        assert_eq!(
            (p.cmd.as_str(), p.argv.len(), p.new_userns()),
            ("sh", 3, false)
        );
        let e = Plan::new(&["a\0b".into()], true).unwrap_err();
        assert_eq!(e.to_string(), "can't run a\0b: Invalid argument");
    }
}
