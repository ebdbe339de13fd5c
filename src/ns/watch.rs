//! Noticing that the target namespace has gone away, through one pollable
//! descriptor.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::error::NsError;
use crate::sys::inotify::{self, Inotify};

/// A descriptor that becomes readable when the target namespace goes away;
/// see [`super::Target::quit_watch`]. Register it with the event loop and
/// call [`QuitWatch::gone`] when it is readable.
#[derive(Debug)]
pub struct QuitWatch {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// A pidfd: the process (target or our helper) exited.
    Process(OwnedFd),
    /// The directory holding a bound namespace file, watched for removals.
    File {
        ino: Inotify,
        path: PathBuf,
        /// Device and inode of the namespace, as the path showed them.
        id: (u64, u64),
        /// Latched once seen gone, so later calls don't need new events.
        gone: bool,
    },
    /// An eventfd that is readable from the start: the namespace file was
    /// gone before the watch was in place.
    Fired(OwnedFd),
}

impl QuitWatch {
    /// Watch a process through its pidfd.
    pub(super) fn process(pidfd: OwnedFd) -> Self {
        Self {
            inner: Inner::Process(pidfd),
        }
    }

    /// Watch the namespace file `path`, which refers to `netns`.
    ///
    /// The watch goes on the parent directory, for removals and renames
    /// (`ip netns del` and podman unmount, then unlink). After adding it we
    /// check that the path still refers to our namespace: a removal just
    /// before the watch existed would otherwise never be noticed.
    pub(super) fn file(path: &Path, netns: BorrowedFd<'_>, what: &str) -> Result<Self, NsError> {
        let io_err = |e: std::io::Error| NsError::Open {
            what: what.to_owned(),
            errno: super::error::errno_of(&e),
        };
        let id = {
            use std::os::unix::fs::MetadataExt;
            let m = netns
                .try_clone_to_owned()
                .map(std::fs::File::from)
                .and_then(|f| f.metadata())
                .map_err(io_err)?;
            (m.dev(), m.ino())
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let ino = Inotify::new().map_err(io_err)?;
        ino.add_watch(
            dir,
            inotify::IN_DELETE
                | inotify::IN_MOVED_FROM
                | inotify::IN_DELETE_SELF
                | inotify::IN_MOVE_SELF,
        )
        .map_err(io_err)?;
        if !still_there(path, id) {
            use nix::sys::eventfd::{EfdFlags, EventFd};
            let fd = EventFd::from_value_and_flags(1, EfdFlags::EFD_CLOEXEC).map_err(|errno| {
                NsError::Sys {
                    op: "creating an eventfd",
                    errno,
                }
            })?;
            return Ok(Self {
                inner: Inner::Fired(fd.into()),
            });
        }
        Ok(Self {
            inner: Inner::File {
                ino,
                path: path.to_path_buf(),
                id,
                gone: false,
            },
        })
    }

    /// Consume pending events; `true` if our namespace is gone (then it
    /// stays `true`). Cheap, and safe to call when nothing is pending.
    pub fn gone(&mut self) -> bool {
        match &mut self.inner {
            Inner::Process(fd) => readable(fd.as_fd()),
            Inner::Fired(_) => true,
            Inner::File {
                ino,
                path,
                id,
                gone,
            } => {
                if *gone {
                    return true;
                }
                let mut buf = [0u8; 4096];
                let mut any = false;
                // Each event in the directory (few: removals and renames)
                // prompts a fresh look at our path; that also covers
                // queue overflows and the directory itself vanishing.
                while let Ok(ev) = ino.read_events(&mut buf) {
                    if ev.is_empty() {
                        break;
                    }
                    any = true;
                }
                *gone = any && !still_there(path, *id);
                *gone
            }
        }
    }
}

impl AsFd for QuitWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            Inner::Process(fd) | Inner::Fired(fd) => fd.as_fd(),
            Inner::File { ino, .. } => ino.as_fd(),
        }
    }
}

/// Whether `path` still shows the namespace with this device and inode.
/// Once the bind mount is gone (even before the file is unlinked) it shows
/// the plain file underneath, on another device.
fn still_there(path: &Path, id: (u64, u64)) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id)
}

/// Whether `fd` polls readable right now.
fn readable(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}
