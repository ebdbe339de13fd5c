//! Errors of namespace set-up, each displayed as one line that names what
//! failed, and the diagnosis of "user namespaces are disabled".

use nix::errno::Errno;
use std::io;

use crate::netlink::NetlinkError;

/// What went wrong while creating, joining or using the target namespace.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// A namespace file could not be opened, e.g.
    /// "--netns /x: No such file or directory" or
    /// "/proc/1234/ns/net: No such process".
    #[error("{what}: {}", .errno.desc())]
    Open {
        /// The option and path, or the procfs path.
        what: String,
        /// Why.
        errno: Errno,
    },
    /// The file is a namespace, but of another kind, or not one at all.
    #[error("{what}: not a {kind} namespace")]
    WrongKind {
        /// The option and path.
        what: String,
        /// "network" or "user".
        kind: &'static str,
    },
    /// The kernel or the administrator doesn't let us create a user
    /// namespace; `cause` names the setting responsible.
    #[error("user namespaces are disabled ({cause})")]
    UserNsDisabled {
        /// e.g. "user.max_user_namespaces=0".
        cause: String,
    },
    /// Creating the namespaces for the command failed for another reason.
    #[error("creating namespaces for the command: {}", .0.desc())]
    Create(Errno),
    /// Writing the command's UID or GID map failed.
    #[error("writing {path}: {}", .errno.desc())]
    IdMap {
        /// `/proc/PID/uid_map`, `gid_map` or `setgroups`.
        path: String,
        /// Why.
        errno: Errno,
    },
    /// `setns(CLONE_NEWUSER)` refused us.
    #[error("joining user namespace {what}: {}", .errno.desc())]
    JoinUserns {
        /// Where the user namespace came from.
        what: String,
        /// Why.
        errno: Errno,
    },
    /// `setns(CLONE_NEWNET)` refused a thread of ours.
    #[error("entering network namespace {what}: {}", .errno.desc())]
    EnterNetns {
        /// Where the network namespace came from.
        what: String,
        /// Why.
        errno: Errno,
    },
    /// Forking the command's helper or joining a user namespace needs a
    /// single-threaded process.
    #[error("namespace set-up needs a single thread, but {0} are running")]
    Threaded(usize),
    /// The command could not be executed.
    #[error("can't run {cmd}: {}", .errno.desc())]
    Exec {
        /// The program name as given.
        cmd: String,
        /// The `execvp()` (or `fork()`) error.
        errno: Errno,
    },
    /// Our helper process ended before the namespaces were ready.
    #[error("namespace helper process ended during set-up ({0})")]
    HelperDied(String),
    /// The long-lived namespace thread has exited.
    #[error("namespace worker thread is gone")]
    WorkerGone,
    /// Bringing up `lo` in the namespace failed.
    #[error("bringing up lo in the namespace: {0}")]
    Loopback(#[source] NetlinkError),
    /// Any other system call failed; `op` says which step.
    #[error("{op}: {}", .errno.desc())]
    Sys {
        /// The step, e.g. "creating a pipe".
        op: &'static str,
        /// Why.
        errno: Errno,
    },
}

impl NsError {
    /// A [`NsError::Sys`] from an `io::Error`.
    pub(crate) fn sys(op: &'static str, e: &io::Error) -> Self {
        Self::Sys {
            op,
            errno: errno_of(e),
        }
    }

    /// The errno behind this error, if there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Open { errno, .. }
            | Self::IdMap { errno, .. }
            | Self::JoinUserns { errno, .. }
            | Self::EnterNetns { errno, .. }
            | Self::Exec { errno, .. }
            | Self::Sys { errno, .. } => Some(*errno),
            Self::Create(errno) => Some(*errno),
            _ => None,
        }
    }
}

/// The errno of an `io::Error` (EIO for errors that carry none).
pub(crate) fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Read an integer sysctl through procfs; `None` if it doesn't exist.
fn sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Why creating namespaces (`with_user`: including a user namespace)
/// failed with `errno`, as precisely as the settings tell.
///
/// The kernel answers EPERM, ENOSPC or EINVAL for several causes: a
/// sysctl switching user namespaces off (Debian's
/// `kernel.unprivileged_userns_clone`, or `user.max_user_namespaces=0`),
/// the count limit being reached, nesting deeper than 32, a kernel built
/// without user namespaces, or a chroot. Reading the settings tells which.
pub(crate) fn diagnose_create(errno: Errno, with_user: bool, privileged: bool) -> NsError {
    if !with_user || !matches!(errno, Errno::EPERM | Errno::ENOSPC | Errno::EINVAL) {
        return NsError::Create(errno);
    }
    let disabled = |cause: &str| NsError::UserNsDisabled {
        cause: cause.to_owned(),
    };
    if !std::path::Path::new("/proc/self/ns/user").exists() {
        return disabled("kernel built without CONFIG_USER_NS");
    }
    if !privileged && sysctl("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return disabled("kernel.unprivileged_userns_clone=0");
    }
    match sysctl("/proc/sys/user/max_user_namespaces") {
        Some(0) => return disabled("user.max_user_namespaces=0"),
        Some(n) if errno == Errno::ENOSPC => {
            return disabled(&format!(
                "user.max_user_namespaces={n} reached, or nested more than 32 deep"
            ));
        }
        _ => {}
    }
    if !privileged && sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return disabled("kernel.apparmor_restrict_unprivileged_userns=1");
    }
    NsError::Create(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_name_the_culprit() {
        let e = NsError::Open {
            what: "--netns /x".into(),
            errno: Errno::ENOENT,
        };
        assert_eq!(e.to_string(), "--netns /x: No such file or directory");
        let e = NsError::Open {
            what: "/proc/1234/ns/net".into(),
            errno: Errno::ESRCH,
        };
        assert_eq!(e.to_string(), "/proc/1234/ns/net: No such process");
        let e = NsError::UserNsDisabled {
            cause: "user.max_user_namespaces=0".into(),
        };
        assert_eq!(
            e.to_string(),
            "user namespaces are disabled (user.max_user_namespaces=0)"
        );
        assert_eq!(
            NsError::Create(Errno::EPERM).to_string(),
            "creating namespaces for the command: Operation not permitted"
        );
    }

    #[test]
    fn unrelated_errors_are_not_blamed_on_user_namespaces() {
        assert!(matches!(
            diagnose_create(Errno::ENOMEM, true, false),
            NsError::Create(Errno::ENOMEM)
        ));
        assert!(matches!(
            diagnose_create(Errno::EPERM, false, false),
            NsError::Create(Errno::EPERM)
        ));
    }
}
