//! passt mode: serve one VM at a time over a UNIX domain stream socket.
//!
//! Theory of operation: the socket is bound and listening before we fork,
//! so by the time the foreground process exits (see `isolate::daemonise`)
//! a hypervisor can connect. The connection is accepted from the event
//! loop (`serve`); while a guest is connected, further connections are
//! refused. When the guest goes away we listen again, unless `--one-off`
//! (or `--fd`) says to exit.

use crate::conf::Config;
use crate::fwd::listen::Listeners;
use crate::isolate::{self, Leftovers};
use crate::serve::{Server, TapSide};
use crate::startup::{StartError, detach_and_drop, err_at, open_files};
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// How many `/tmp/passt_N.socket` paths we try without `-s`.
const SOCKET_PROBE_MAX: u32 = 64;

/// Bind `path`, taking over a stale socket file nobody listens on.
fn bind_path(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            match UnixStream::connect(path) {
                Err(ce) if ce.kind() == io::ErrorKind::ConnectionRefused => {
                    // Left over by a process that is gone.
                    std::fs::remove_file(path)?;
                    UnixListener::bind(path)
                }
                _ => Err(e),
            }
        }
        r => r,
    }
}

fn bind_socket(
    conf: &Config,
    leftovers: &mut Leftovers,
) -> Result<(UnixListener, PathBuf), StartError> {
    if let Some(p) = &conf.passt.socket_path {
        let l = bind_path(p).map_err(|e| err_at(format_args!("-s {}", p.display()), e))?;
        leftovers.add(p);
        return Ok((l, p.clone()));
    }
    for n in 1..=SOCKET_PROBE_MAX {
        let p = PathBuf::from(format!("/tmp/passt_{n}.socket"));
        match bind_path(&p) {
            Ok(l) => {
                leftovers.add(&p);
                return Ok((l, p));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(err_at(p.display(), e)),
        }
    }
    Err(StartError(format!(
        "no free socket path among /tmp/passt_1.socket to /tmp/passt_{SOCKET_PROBE_MAX}.socket"
    )))
}

/// Where the guest comes from.
enum Source {
    /// The socket we bound, and its path.
    Listener(UnixListener, PathBuf),
    /// `--fd`: an already connected socket, served once.
    Fd(UnixStream),
}

/// Run passt until a signal, or until the guest leaves with `--one-off`.
///
/// # Errors
/// Start-up failures, as one line for the user. Once serving, guest
/// misbehaviour never becomes an error.
pub fn run(conf: &Config) -> Result<(), StartError> {
    isolate::initial().map_err(|e| err_at("signals", e))?;
    let mut leftovers = Leftovers::default();
    let files = open_files(conf, &mut leftovers)?;

    let source = match conf.passt.fd {
        Some(fd) => Source::Fd(adopt_fd(fd)?),
        None => {
            let (l, path) = bind_socket(conf, &mut leftovers)?;
            Source::Listener(l, path)
        }
    };
    let listeners = Listeners::bind(conf, isolate::fd_limit())?;
    // Only now that nothing can fail any more: what we'll tell the guest,
    // and how to reach us.
    crate::startup::log_summary(conf);
    if let Source::Listener(_, path) = &source {
        log::info!("UNIX domain socket bound at {}", path.display());
        if !conf.quiet {
            print_qemu_hint(path);
        }
    }
    let (ready, pcap) = detach_and_drop(conf, files, &mut leftovers, false, false, || Ok(()))?;

    let side = match source {
        Source::Listener(l, _) => TapSide::Stream {
            listener: Some(l),
            conn: None,
        },
        Source::Fd(c) => TapSide::Stream {
            listener: None,
            conn: Some(c),
        },
    };
    let mut server = Server::new(conf, side, pcap, None, listeners)?;
    ready.notify();
    server.serve();
    leftovers.remove_all();
    Ok(())
}

fn adopt_fd(fd: RawFd) -> Result<UnixStream, StartError> {
    let what = format!("--fd {fd}");
    let owned = crate::sys::adopt_fd(fd).map_err(|e| err_at(&what, e))?;
    // Move it above the standard streams (dup picks the lowest free number
    // from 3 up): daemonising points 0-2 at /dev/null, which would
    // otherwise replace a guest handed to us as standard input.
    let moved = owned.try_clone().map_err(|e| err_at(&what, e))?;
    drop(owned);
    let stream = UnixStream::from(moved);
    stream
        .set_nonblocking(true)
        .map_err(|e| err_at(format_args!("--fd {fd}"), e))?;
    Ok(stream)
}

fn print_qemu_hint(path: &Path) {
    let p = path.display();
    let _ = writeln!(
        io::stderr().lock(),
        "Connect qemu 7.2 or later with:\n    \
         -netdev stream,id=n0,server=off,addr.type=unix,addr.path={p} -device virtio-net-pci,netdev=n0"
    );
}
