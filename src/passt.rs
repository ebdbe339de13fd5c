//! passt mode: serve one VM at a time over a UNIX domain stream socket.
//!
//! Theory of operation: the socket is bound and listening before we fork,
//! so by the time the foreground process exits (see `isolate::daemonise`)
//! a hypervisor can connect. The connection is accepted from the event
//! loop; while a guest is connected, further connections are refused. When
//! the guest goes away we listen again, unless `--one-off` (or `--fd`) says
//! to exit.

use crate::conf::Config;
use crate::dispatch::Dispatch;
use crate::event::{EpollRef, EventLoop};
use crate::isolate::{self, Leftovers, Ready};
use crate::pcap::Pcap;
use crate::tap::stream::{FramingError, StreamRx};
use crate::tap::{Batch, TxQueue};
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// How many `/tmp/passt_N.socket` paths we try without `-s`.
const SOCKET_PROBE_MAX: u32 = 64;

/// Bytes of frames we hold for a guest that doesn't read.
const TX_QUEUE_BYTES: usize = 4 << 20;

/// A start-up failure: one line for the user, exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

fn err_at(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StartError {
    StartError(format!("{what}: {e}"))
}

/// Files named on the command line, opened before anything else can fail
/// halfway, and before privileges are dropped.
struct OpenedFiles {
    pidfile: Option<File>,
    pcap: Option<Pcap>,
    log: Option<File>,
}

fn create_file(path: &Path, opt: &str, leftovers: &mut Leftovers) -> Result<File, StartError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| err_at(format_args!("{opt} {}", path.display()), e))?;
    leftovers.add(path);
    Ok(f)
}

fn open_files(conf: &Config, leftovers: &mut Leftovers) -> Result<OpenedFiles, StartError> {
    let pidfile = match &conf.pidfile {
        Some(p) => Some(create_file(p, "-P", leftovers)?),
        None => None,
    };
    let pcap = match &conf.pcap {
        Some(p) => {
            let f = create_file(p, "-p", leftovers)?;
            // The capture is the user's result: keep it when we exit.
            leftovers.forget_path(p);
            Some(Pcap::new(f).map_err(|e| err_at(format_args!("-p {}", p.display()), e))?)
        }
        None => None,
    };
    let log = match &conf.log_file {
        Some(p) => {
            // Readable too: when the file is full, the logger moves the
            // newest lines to the front through this same descriptor.
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| err_at(format_args!("-l {}", p.display()), e))?;
            Some(f)
        }
        None => None,
    };
    Ok(OpenedFiles { pidfile, pcap, log })
}

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
    Listener(UnixListener),
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
            log::info!("UNIX domain socket bound at {}", path.display());
            if !conf.quiet {
                print_qemu_hint(&path);
            }
            Source::Listener(l)
        }
    };

    let ready = if conf.foreground {
        Ready::foreground()
    } else {
        let r = isolate::daemonise(&mut leftovers).map_err(|e| err_at("daemonise", e))?;
        if files.log.is_none() {
            crate::log::use_syslog();
        }
        r
    };
    if let Some(mut f) = files.pidfile {
        isolate::write_pidfile(&mut f).map_err(|e| err_at("-P", e))?;
    }
    if let Some(f) = files.log {
        crate::log::use_file(f, conf.log_size);
    }
    let ids = isolate::target_ids(conf.runas);
    isolate::drop_privileges(ids, leftovers.paths()).map_err(|e| err_at("--runas", e))?;

    let mut server = Server::new(conf, source, files.pcap)?;
    ready.notify();
    server.serve();
    leftovers.remove_all();
    Ok(())
}

fn adopt_fd(fd: RawFd) -> Result<UnixStream, StartError> {
    let owned = crate::sys::adopt_fd(fd).map_err(|e| err_at(format_args!("--fd {fd}"), e))?;
    let stream = UnixStream::from(owned);
    stream
        .set_nonblocking(true)
        .map_err(|e| err_at(format_args!("--fd {fd}"), e))?;
    Ok(stream)
}

fn print_qemu_hint(path: &Path) {
    let p = path.display();
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "\nYou can now start qemu (>= 7.2, with commit 13c6be96618c):\n    \
         kvm ... -device virtio-net-pci,netdev=s -netdev stream,id=s,server=off,addr.type=unix,addr.path={p}\n\
         or qrap, for earlier qemu versions:\n    \
         ./qrap 5 kvm ... -net socket,fd=5 -net nic,model=virtio"
    );
}

/// The running passt: event loop, guest connection and protocol state.
struct Server<'c> {
    ev: EventLoop,
    signals: SignalFd,
    listener: Option<UnixListener>,
    conn: Option<UnixStream>,
    /// Whether the connection is watched for writability.
    conn_out: bool,
    one_off: bool,
    rx: StreamRx,
    batch: Batch,
    tx: TxQueue,
    dispatch: Dispatch<'c>,
}

impl<'c> Server<'c> {
    fn new(conf: &'c Config, source: Source, pcap: Option<Pcap>) -> Result<Self, StartError> {
        let ev = EventLoop::new().map_err(|e| err_at("epoll", e))?;
        let signals = SignalFd::with_flags(
            &isolate::exit_sigset(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| err_at("signalfd", e))?;
        ev.add(&signals, EpollRef::Signal, false)
            .map_err(|e| err_at("epoll", e))?;
        let mut s = Server {
            ev,
            signals,
            listener: None,
            conn: None,
            conn_out: false,
            one_off: conf.passt.one_off,
            rx: StreamRx::default(),
            batch: Batch::default(),
            tx: TxQueue::new(TX_QUEUE_BYTES, pcap),
            dispatch: Dispatch::new(conf),
        };
        match source {
            Source::Listener(l) => {
                l.set_nonblocking(true).map_err(|e| err_at("socket", e))?;
                s.ev.add(&l, EpollRef::Listener, false)
                    .map_err(|e| err_at("epoll", e))?;
                s.listener = Some(l);
            }
            Source::Fd(c) => {
                s.one_off = true;
                s.attach(c).map_err(|e| err_at("epoll", e))?;
            }
        }
        Ok(s)
    }

    fn attach(&mut self, c: UnixStream) -> io::Result<()> {
        c.set_nonblocking(true)?;
        self.ev.add(&c, EpollRef::TapStream, false)?;
        self.conn = Some(c);
        self.conn_out = false;
        self.rx.reset();
        self.tx.clear();
        Ok(())
    }

    /// The event loop. Returns when it's time to exit.
    fn serve(&mut self) {
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let n = match self.ev.wait(&mut events, 1000) {
                Ok(n) => n,
                Err(e) => {
                    log::error!("epoll_wait: {e}");
                    return;
                }
            };
            for ev in &events[..n] {
                let Ok(r) = EpollRef::try_from(ev.data()) else {
                    continue;
                };
                let quit = match r {
                    EpollRef::Signal => self.on_signal(),
                    EpollRef::Listener => {
                        self.on_accept();
                        false
                    }
                    EpollRef::TapStream => self.on_stream(ev.events()),
                };
                if quit {
                    return;
                }
            }
            self.flush();
        }
    }

    fn on_signal(&mut self) -> bool {
        match self.signals.read_signal() {
            Ok(Some(si)) => {
                let name = nix::sys::signal::Signal::try_from(si.ssi_signo as i32)
                    .map(|s| s.as_str())
                    .unwrap_or("signal");
                log::info!("{name} received, exiting");
                true
            }
            _ => false,
        }
    }

    fn on_accept(&mut self) {
        let Some(l) = self.listener.as_ref() else {
            return;
        };
        let c = match l.accept() {
            Ok((c, _)) => c,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    log::warn!("accept: {e}");
                }
                return;
            }
        };
        if self.conn.is_some() {
            // One guest at a time; the connection closes when `c` drops.
            log::warn!("refusing a second guest connection");
            return;
        }
        match self.attach(c) {
            Ok(()) => log::info!("guest connected"),
            Err(e) => log::warn!("can't serve the guest connection: {e}"),
        }
    }

    /// Returns true when the program should exit.
    fn on_stream(&mut self, flags: EpollFlags) -> bool {
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush();
        }
        if flags.intersects(
            EpollFlags::EPOLLIN
                | EpollFlags::EPOLLHUP
                | EpollFlags::EPOLLERR
                | EpollFlags::EPOLLRDHUP,
        ) {
            return self.read_guest();
        }
        false
    }

    fn read_guest(&mut self) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        let reason = match self.rx.read_from(conn) {
            Ok(0) => "guest disconnected".to_string(),
            Ok(_) => loop {
                match self.rx.frames(&mut self.batch) {
                    Ok(()) if self.batch.is_empty() => return false,
                    Ok(()) => self
                        .dispatch
                        .handle_batch(self.rx.buf(), &self.batch, &mut self.tx),
                    Err(e) => break framing_reason(e),
                }
            },
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return false;
            }
            Err(e) => format!("guest connection error: {e}"),
        };
        self.detach(&reason)
    }

    /// Close the guest connection. Returns true when we should exit.
    fn detach(&mut self, reason: &str) -> bool {
        if let Some(c) = self.conn.take() {
            let _ = self.ev.remove(&c);
        }
        log::info!("{reason}");
        if self.dispatch.drops.total() > 0 {
            log::info!("dropped guest frames: {}", self.dispatch.drops);
        }
        if self.tx.dropped > 0 {
            log::info!(
                "frames to guest dropped (guest not reading): {}",
                self.tx.dropped
            );
        }
        self.rx.reset();
        self.tx.clear();
        if self.one_off {
            log::info!("exiting (one-off)");
            return true;
        }
        false
    }

    /// Send what we can of the queue, and watch for writability only while
    /// something is left.
    fn flush(&mut self) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let mut failed = None;
        while !self.tx.pending().is_empty() {
            match (&*conn).write(self.tx.pending()) {
                Ok(n) => self.tx.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            // The read side will see the hang-up and detach.
            log::debug!("write to guest: {e}");
            self.tx.clear();
        }
        let want_out = !self.tx.pending().is_empty();
        if want_out != self.conn_out {
            if let Err(e) = self.ev.modify(conn, EpollRef::TapStream, want_out) {
                log::warn!("epoll: {e}");
            }
            self.conn_out = want_out;
        }
    }
}

fn framing_reason(e: FramingError) -> String {
    format!("guest stream out of sync ({e}), closing the connection")
}
