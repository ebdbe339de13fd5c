//! The namespace pasta serves: create it or join it, run code inside it,
//! start the command in it, and notice when it goes away.
//!
//! # Theory of operation
//!
//! Three kernel rules shape this module:
//!
//! 1. **Network namespaces are per thread, user namespaces per process.**
//!    `setns(CLONE_NEWNET)` moves only the calling thread, and sockets
//!    (netlink and the tap's included) live in the namespace of the
//!    thread that created them. `setns(CLONE_NEWUSER)` is refused unless
//!    the process has exactly one thread. So [`Target::prepare`] joins
//!    the user namespace process-wide, first thing, while pasta is still
//!    single-threaded; everything that acts inside the network namespace
//!    afterwards runs on a thread that entered it ([`Target::run_in`],
//!    [`NsWorker`]), and the main thread stays in the init namespace where
//!    the host-side sockets belong.
//! 2. **Capabilities come from the owning user namespace.** Opening the
//!    tap or configuring links needs CAP_NET_ADMIN, and entering the
//!    network namespace CAP_SYS_ADMIN, in the user namespace that owns
//!    it — or in an ancestor, which root in the init namespace is. So a
//!    privileged pasta (CAP_SYS_ADMIN in its own user namespace) never
//!    joins one: it keeps its place, and can later drop to `nobody`
//!    (`--runas`). An unprivileged pasta joins the target's user namespace,
//!    where it is root; [`Target::joined_userns`] tells the caller, whose
//!    later switch to another user must then be skipped (only our own ID is
//!    mapped there).
//! 3. **UID/GID maps are written from the parent user namespace.** For a
//!    spawned command, pasta writes the new namespace's maps itself, before
//!    any privilege drop: as root (CAP_SETUID in the parent) that keeps
//!    `setgroups` usable inside; unprivileged, only our own IDs may be
//!    mapped and `setgroups` must be denied first. Either way our
//!    effective UID and GID become 0 inside.
//!
//! And one consequence: pasta started as root drops to `nobody` after
//! set-up, and from then on can't enter a namespace owned by root (`ip
//! netns add x`). Work that must happen inside later (listening sockets
//! for port forwarding, reading `/proc/thread-self/net/tcp`) goes to an
//! [`NsWorker`], a thread that entered before the drop and stays there.
//!
//! # Targets
//!
//! - **Spawn** (`pasta [COMMAND]`): a helper process creates new user
//!   (unless `--netns-only`), network, IPC, UTS, mount and PID namespaces,
//!   and waits until [`Target::release`] to start the command; see
//!   [`spawn`] for the process tree and how the command's end is reported.
//! - **Pid** (`pasta PID`): the network namespace of that process, and
//!   its user namespace unless `--netns-only` (or `--userns` names one).
//!   A pidfd taken first makes the lookup race-free and later tells when
//!   the process exits.
//! - **Path** (`--netns PATH|NAME`): the bound namespace file; a user
//!   namespace only with `--userns`.
//!
//! In all cases `prepare` ends by entering the network namespace once from
//! a throw-away thread, so a missing permission is reported at start-up
//! rather than when the tap is opened. That thread is joined before
//! `prepare` returns: the caller may still fork to background afterwards
//! (Pid and Path targets).
//!
//! Not done here: the sandboxing user namespace upstream creates for
//! itself when it joins none, and the empty mount namespace (`isolate`).

mod error;
pub mod spawn;
mod thread;
mod watch;

#[cfg(test)]
mod tests;

use nix::sched::CloneFlags;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use error::NsError;
pub use spawn::Spawned;
pub use thread::NsWorker;
pub use watch::QuitWatch;

use crate::conf::{NsTarget, PastaConfig};
use crate::netlink::Netlink;

/// `CAP_SETGID`, from `<linux/capability.h>`.
const CAP_SETGID: u32 = 6;
/// `CAP_SYS_ADMIN`, from `<linux/capability.h>`.
const CAP_SYS_ADMIN: u32 = 21;

/// The namespace pasta serves, prepared while still single-threaded.
#[derive(Debug)]
pub struct Target {
    /// The network namespace.
    netns: OwnedFd,
    /// How to name it in messages: "--netns /run/netns/x",
    /// "/proc/1234/ns/net".
    what: String,
    /// Where it came from, with what we keep of that.
    source: Source,
    /// Whether `prepare` moved the process into another user namespace.
    joined_userns: bool,
    /// `--no-netns-quit`.
    no_netns_quit: bool,
}

#[derive(Debug)]
enum Source {
    /// We created it; the command waits for `release`.
    Spawn(Spawned),
    /// A process's namespace; the pidfd tells when it exits.
    Pid(OwnedFd),
    /// A bound namespace file.
    Path(PathBuf),
}

impl Target {
    /// Create or open the target namespace described by `cfg`, joining its
    /// user namespace when one applies and we need it (see the module
    /// documentation).
    ///
    /// Call it while the process is single-threaded: it forks (Spawn) and
    /// may join a user namespace; both are refused or unsafe otherwise.
    ///
    /// For Spawn, the command waits until [`Target::release`], and `--userns`
    /// is ignored. The command is killed when the thread that called
    /// `prepare` ends (`PR_SET_PDEATHSIG` follows the parent thread): call
    /// it from the main thread, and don't fork to background afterwards —
    /// pasta with a command stays in the foreground as its parent anyway.
    ///
    /// # Errors
    /// One-line [`NsError`]s naming the option, path or step that failed,
    /// e.g. "--netns /x: No such file or directory", "/proc/1234/ns/net: No
    /// such process", "user namespaces are disabled
    /// (user.max_user_namespaces=0)", or [`NsError::Threaded`].
    pub fn prepare(cfg: &PastaConfig) -> Result<Target, NsError> {
        let target = match &cfg.target {
            NsTarget::Spawn(cmd) => prepare_spawn(cmd, cfg)?,
            NsTarget::Pid(pid) => prepare_pid(*pid, cfg)?,
            NsTarget::Path(path) => prepare_path(path, cfg)?,
        };
        // Enter once now: a permission problem surfaces here, with the
        // namespace's name, instead of later as a tap or netlink error.
        target.run_in(|| ())?;
        Ok(target)
    }

    /// Run `f` on a short-lived thread that entered the target network
    /// namespace; return its result. A panic in `f` is passed on.
    ///
    /// Inside, `/proc/self` still shows the main thread's namespace: use
    /// `/proc/thread-self`.
    ///
    /// # Errors
    /// [`NsError::EnterNetns`] if the thread can't enter (e.g. `EPERM`
    /// after pasta dropped privileges), or a thread creation failure.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NsError> {
        thread::run_in(self.netns.as_fd(), &self.what, f)
    }

    /// Start a long-lived worker thread inside the target network
    /// namespace. It enters now, so it keeps working after a later
    /// privilege drop that would forbid entering.
    ///
    /// # Errors
    /// As [`Target::run_in`].
    pub fn worker(&self) -> Result<NsWorker, NsError> {
        let fd = self
            .netns
            .try_clone()
            .map_err(|e| NsError::sys("duplicating the namespace descriptor", &e))?;
        NsWorker::start(fd, self.what.clone())
    }

    /// Let the spawned command start, and wait until it has been executed.
    /// Call it once the namespace's network is configured. Does nothing
    /// for Pid and Path targets, or when called again.
    ///
    /// # Errors
    /// [`NsError::Exec`] if the command can't be executed.
    pub fn release(&mut self) -> Result<(), NsError> {
        match &mut self.source {
            Source::Spawn(child) => child.release(),
            Source::Pid(_) | Source::Path(_) => Ok(()),
        }
    }

    /// A pollable descriptor that becomes readable when the namespace goes
    /// away:
    /// - Path: the namespace file is removed or unmounted (inotify on its
    ///   directory);
    /// - Pid: the process exits (its pidfd);
    /// - Spawn: the command has ended (the helper's pidfd); then
    ///   [`Spawned::wait`] gives the exit code. This one is returned even
    ///   with `--no-netns-quit`, which concerns namespaces we joined: the
    ///   end of the command we run is always the end of pasta.
    ///
    /// `None` for Pid and Path with `--no-netns-quit`.
    ///
    /// # Errors
    /// Descriptor creation failures; for Path, the directory can't be
    /// watched (e.g. `EACCES`).
    pub fn quit_watch(&self) -> Result<Option<QuitWatch>, NsError> {
        let dup = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .map_err(|e| NsError::sys("duplicating a pidfd", &e))
        };
        match &self.source {
            Source::Spawn(child) => Ok(Some(QuitWatch::process(dup(child.pidfd())?))),
            _ if self.no_netns_quit => Ok(None),
            Source::Pid(pidfd) => Ok(Some(QuitWatch::process(dup(pidfd.as_fd())?))),
            Source::Path(path) => QuitWatch::file(path, self.netns.as_fd(), &self.what).map(Some),
        }
    }

    /// The spawned command (Spawn only): its PID, `wait()`, `try_wait()`.
    pub fn spawned(&mut self) -> Option<&mut Spawned> {
        match &mut self.source {
            Source::Spawn(child) => Some(child),
            Source::Pid(_) | Source::Path(_) => None,
        }
    }

    /// Whether `prepare` moved this process into the target's user
    /// namespace. If so we are root there with only our own IDs mapped:
    /// switching to another user (`--runas`, `nobody`) would fail and is
    /// pointless, so the caller skips it.
    pub fn joined_userns(&self) -> bool {
        self.joined_userns
    }

    /// The target network namespace's descriptor.
    pub fn netns(&self) -> BorrowedFd<'_> {
        self.netns.as_fd()
    }

    /// How messages name the namespace, e.g. "--netns /run/netns/x".
    pub fn describe(&self) -> &str {
        &self.what
    }
}

/// Bring up `lo` in the target namespace, as the manual promises ("pasta
/// and loopback interface"): binding loopback addresses there needs it.
///
/// # Errors
/// [`NsError::Loopback`] for netlink failures, or as [`Target::run_in`].
pub fn bring_up_loopback(target: &Target) -> Result<(), NsError> {
    target
        .run_in(|| {
            let mut nl = Netlink::new()?;
            let lo = nl.link_index("lo")?;
            nl.set_link_up(lo)
        })?
        .map_err(NsError::Loopback)
}

/// Spawn: the helper creates the namespaces, we write its ID maps, take
/// its namespace files and join its user namespace if we need to.
fn prepare_spawn(cmd: &[String], cfg: &PastaConfig) -> Result<Target, NsError> {
    require_single_thread()?;
    let plan = spawn::Plan::new(cmd, !cfg.netns_only)?;
    let privileged = has_cap(CAP_SYS_ADMIN);
    let child = spawn::start(&plan).map_err(|e| match e {
        NsError::Create(errno) => error::diagnose_create(errno, plan.new_userns(), privileged),
        e => e,
    })?;
    let pid = child.pid();
    if plan.new_userns() {
        spawn::write_id_maps(pid, !has_cap(CAP_SETGID))?;
    }
    let what = format!("/proc/{pid}/ns/net");
    let netns = open_ns(Path::new(&what), &what, CloneFlags::CLONE_NEWNET)?;
    let mut joined_userns = false;
    if plan.new_userns() {
        let user = format!("/proc/{pid}/ns/user");
        let fd = open_ns(Path::new(&user), &user, CloneFlags::CLONE_NEWUSER)?;
        joined_userns = join_userns(&fd, &user)?;
    }
    Ok(Target {
        netns,
        what,
        source: Source::Spawn(child),
        joined_userns,
        no_netns_quit: cfg.no_netns_quit,
    })
}

/// Pid: the process's network namespace, and a user namespace unless
/// `--netns-only`: the one `--userns` names, else the process's own.
fn prepare_pid(pid: u32, cfg: &PastaConfig) -> Result<Target, NsError> {
    let what = format!("/proc/{pid}/ns/net");
    let no_such = |what: &str| NsError::Open {
        what: what.to_owned(),
        errno: nix::errno::Errno::ESRCH,
    };
    let raw = i32::try_from(pid).map_err(|_| no_such(&what))?;
    // The pidfd pins the process we mean before we look it up by number.
    let pidfd = crate::sys::process::pidfd_open(raw).map_err(|e| NsError::Open {
        what: what.clone(),
        errno: error::errno_of(&e),
    })?;
    let netns = open_ns(Path::new(&what), &what, CloneFlags::CLONE_NEWNET)?;
    let userns = if cfg.netns_only {
        None
    } else if let Some(p) = &cfg.userns {
        let w = format!("--userns {}", p.display());
        Some((open_ns(p, &w, CloneFlags::CLONE_NEWUSER)?, w))
    } else {
        let w = format!("/proc/{pid}/ns/user");
        Some((open_ns(Path::new(&w), &w, CloneFlags::CLONE_NEWUSER)?, w))
    };
    // Still running now means it was running throughout, so the /proc
    // entries we opened were its own and not those of a successor that
    // reused the number.
    if watch::QuitWatch::process(
        pidfd
            .try_clone()
            .map_err(|e| NsError::sys("duplicating a pidfd", &e))?,
    )
    .gone()
    {
        return Err(no_such(&what));
    }
    let joined_userns = match &userns {
        Some((fd, w)) => join_userns(fd, w)?,
        None => false,
    };
    Ok(Target {
        netns,
        what,
        source: Source::Pid(pidfd),
        joined_userns,
        no_netns_quit: cfg.no_netns_quit,
    })
}

/// Path: the bound network namespace, and the `--userns` one if given
/// (and not overridden by `--netns-only`).
fn prepare_path(path: &Path, cfg: &PastaConfig) -> Result<Target, NsError> {
    let what = format!("--netns {}", path.display());
    let netns = open_ns(path, &what, CloneFlags::CLONE_NEWNET)?;
    let joined_userns = match (&cfg.userns, cfg.netns_only) {
        (Some(p), false) => {
            let w = format!("--userns {}", p.display());
            let fd = open_ns(p, &w, CloneFlags::CLONE_NEWUSER)?;
            join_userns(&fd, &w)?
        }
        _ => false,
    };
    Ok(Target {
        netns,
        what,
        source: Source::Path(path.to_path_buf()),
        joined_userns,
        no_netns_quit: cfg.no_netns_quit,
    })
}

/// Open a namespace file and check it is of `kind`.
fn open_ns(path: &Path, what: &str, kind: CloneFlags) -> Result<OwnedFd, NsError> {
    let fd = OwnedFd::from(File::open(path).map_err(|e| NsError::Open {
        what: what.to_owned(),
        errno: error::errno_of(&e),
    })?);
    let wrong = || NsError::WrongKind {
        what: what.to_owned(),
        kind: if kind == CloneFlags::CLONE_NEWUSER {
            "user"
        } else {
            "network"
        },
    };
    match crate::sys::nsfs::ns_type(fd.as_fd()) {
        Ok(t) if t == kind.bits() => Ok(fd),
        _ => Err(wrong()),
    }
}

/// Join the user namespace `fd` process-wide, unless we are in it already
/// or privileged enough not to need it. Returns whether we joined.
fn join_userns(fd: &OwnedFd, what: &str) -> Result<bool, NsError> {
    if same_ns(fd, "/proc/self/ns/user") || has_cap(CAP_SYS_ADMIN) {
        return Ok(false);
    }
    require_single_thread()?;
    nix::sched::setns(fd, CloneFlags::CLONE_NEWUSER).map_err(|errno| NsError::JoinUserns {
        what: what.to_owned(),
        errno,
    })?;
    Ok(true)
}

/// Whether `fd` and the namespace link `ours` are the same namespace.
fn same_ns(fd: &OwnedFd, ours: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let theirs = fd.try_clone().map(File::from).and_then(|f| f.metadata());
    match (theirs, std::fs::metadata(ours)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// A field of `/proc/self/status`, e.g. "Threads" or "CapEff".
fn proc_status(field: &str) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim().to_owned())
    })
}

/// Whether capability number `cap` is in our effective set.
fn has_cap(cap: u32) -> bool {
    proc_status("CapEff")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|set| set & (1 << cap) != 0)
}

/// Fail unless this process has a single thread (unknown counts as one:
/// the kernel will still refuse a multi-threaded join).
fn require_single_thread() -> Result<(), NsError> {
    match proc_status("Threads").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) if n > 1 => Err(NsError::Threaded(n)),
        _ => Ok(()),
    }
}
