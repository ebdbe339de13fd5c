//! Backend for the `log` facade: stderr at start-up, then syslog or a size-capped log file.
//!
//! # Theory of operation
//!
//! One global sink sits behind a mutex: [`init`] installs the logger and
//! writes to stderr; once running, the caller switches to [`use_syslog`]
//! (daemonised, no `-l`) or [`use_file`] (`-l`). Every message is formatted
//! into a buffer kept in the sink state, then written with a single
//! `write`/`send`. Since that happens under the lock, lines never
//! interleave, and after the first few messages the buffer doesn't need to
//! grow, so logging doesn't allocate.
//!
//! The log file is opened by the caller, possibly before privileges are
//! dropped, so we can never reopen it by path. `--log-size` is enforced on
//! the descriptor alone. When a line would push the file over the limit,
//! we keep the newest half of it, starting at a line boundary: we move
//! those bytes to the beginning with positioned reads and writes, then
//! truncate. That needs a descriptor open for reading as well; on a
//! write-only one we can only empty the file when it is full. The caller
//! may have opened the file with `O_APPEND`, and on Linux `pwrite()`
//! ignores the offset on such descriptors, so we clear that flag and track
//! the write position ourselves.
//!
//! Accepted risk: if the process dies in the middle of a rotation, the file
//! may hold a duplicated chunk of old lines. It stays a valid text log.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixDatagram;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Where syslog messages go.
const SYSLOG_PATH: &str = "/dev/log";

/// syslog facility LOG_DAEMON, already shifted (RFC 3164 section 4.1.1:
/// PRI = facility * 8 + severity).
const LOG_DAEMON: u8 = 3 << 3;

/// Chunk size for moving log file contents during rotation.
const MOVE_CHUNK: usize = 4096;

/// The logger handed to the `log` crate; all state lives in [`STATE`].
struct Logger;

static LOGGER: Logger = Logger;

/// When logging started: file timestamps count from here.
static START: OnceLock<Instant> = OnceLock::new();

static STATE: Mutex<State> = Mutex::new(State {
    prog: "passt",
    sink: Sink::Stderr,
    line: String::new(),
});

struct State {
    /// Program name prefixed to stderr and syslog lines.
    prog: &'static str,
    sink: Sink,
    /// Formatting buffer, reused across messages.
    line: String,
}

enum Sink {
    Stderr,
    /// Connected to `/dev/log`; `pid` is ours after daemonising.
    Syslog {
        sock: UnixDatagram,
        pid: u32,
    },
    File(FileSink),
    /// Syslog was requested but isn't available: messages are dropped.
    Nothing,
}

fn state() -> MutexGuard<'static, State> {
    // A panic while logging must not silence every later message.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the logger, writing `prog: message` lines to stderr up to `level`.
pub fn init(prog: &'static str, level: LevelFilter) {
    START.get_or_init(Instant::now);
    state().prog = prog;
    // Fails only if a logger is already installed, e.g. ours from an
    // earlier call: then the new name and level still apply.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Changes the most verbose level that gets logged.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Switches to the system logger (`/dev/log`), dropping messages if there is none.
pub fn use_syslog() {
    let sink = syslog_sink(SYSLOG_PATH);
    state().sink = sink;
}

/// A sink sending to the syslog socket at `path`, or [`Sink::Nothing`].
fn syslog_sink(path: &str) -> Sink {
    match UnixDatagram::unbound().and_then(|s| {
        s.connect(path)?;
        // A stalled syslog daemon must not stall the data path: lose
        // messages instead of blocking.
        s.set_nonblocking(true)?;
        Ok(s)
    }) {
        Ok(sock) => Sink::Syslog {
            sock,
            pid: std::process::id(),
        },
        Err(_) => Sink::Nothing,
    }
}

/// Switches to the already opened log `file`, capped at `max_size` bytes.
///
/// If the descriptor can't be made usable, logging stays on the current sink
/// and the reason is logged there.
pub fn use_file(file: File, max_size: u64) {
    match FileSink::new(file, max_size) {
        Ok(f) => state().sink = Sink::File(f),
        Err(e) => log::error!("log file unusable, not switching to it: {e}"),
    }
}

/// Writes one message to the current sink whatever the log level, with
/// the severity of an informational one: what the user asked to see
/// (`--stats`, SIGUSR1) even under `-q`.
pub fn always(args: std::fmt::Arguments) {
    state().emit(Level::Info, args);
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        state().emit(record.level(), *record.args());
    }

    fn flush(&self) {}
}

impl State {
    /// Formats one message for the current sink and writes it there.
    fn emit(&mut self, level: Level, args: std::fmt::Arguments) {
        let State { prog, sink, line } = self;
        line.clear();
        // Writing to a String can't fail (fmt::Error would only come from a
        // broken Display impl); a partial line is still worth emitting.
        let _ = match sink {
            Sink::Stderr => write!(line, "{prog}: {args}"),
            Sink::Syslog { pid, .. } => write!(
                line,
                "<{}>{prog}[{pid}]: {args}",
                LOG_DAEMON | severity(level)
            ),
            Sink::File(_) => {
                let t = START.get_or_init(Instant::now).elapsed();
                write!(line, "{}.{:03}: {args}", t.as_secs(), t.subsec_millis())
            }
            Sink::Nothing => return,
        };
        // One message, one line: embedded newlines would split it.
        if line.contains('\n') {
            *line = line.replace('\n', " ");
        }
        // Failures are ignored: there is nowhere left to report them.
        match sink {
            Sink::Stderr => {
                line.push('\n');
                let _ = io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog { sock, .. } => {
                let _ = sock.send(line.as_bytes());
            }
            Sink::File(f) => {
                line.push('\n');
                let _ = f.write_line(line.as_bytes());
            }
            Sink::Nothing => {}
        }
    }
}

/// RFC 3164 section 4.1.1 severity of a `log` level.
fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// A log file capped at a maximum size by discarding its oldest lines.
struct FileSink {
    file: File,
    /// Current end of data, where the next line goes.
    pos: u64,
    max_size: u64,
    /// Opened for reading too, so old lines can be moved; if not, a full
    /// file is emptied instead.
    readable: bool,
}

impl FileSink {
    /// Takes over `file`, appending after its current contents.
    fn new(file: File, max_size: u64) -> io::Result<Self> {
        // With O_APPEND, Linux pwrite() writes at the end whatever the
        // offset, which would break rotation: see the module docs.
        let flags = OFlag::from_bits_retain(fcntl(&file, FcntlArg::F_GETFL)?);
        fcntl(&file, FcntlArg::F_SETFL(flags.difference(OFlag::O_APPEND)))?;
        let readable = flags & OFlag::O_ACCMODE != OFlag::O_WRONLY;
        let pos = file.metadata()?.len();
        Ok(Self {
            file,
            pos,
            max_size,
            readable,
        })
    }

    /// Writes one whole line (ending in a newline), first making room if it
    /// wouldn't fit. A line longer than the whole file is cut short.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let max = usize::try_from(self.max_size).unwrap_or(usize::MAX);
        let line = if line.len() > max {
            // Keep its beginning; the newline goes back below.
            &line[..max.saturating_sub(1)]
        } else {
            line
        };
        let len = line.len() as u64;
        if self.pos + len > self.max_size {
            let keep = (self.max_size / 2).min(self.max_size - len);
            self.discard_oldest(keep)?;
        }
        self.file.write_all_at(line, self.pos)?;
        self.pos += len;
        if line.last() != Some(&b'\n') && self.pos < self.max_size {
            self.file.write_all_at(b"\n", self.pos)?;
            self.pos += 1;
        }
        Ok(())
    }

    /// Keeps at most the newest `keep` bytes, starting at a line boundary,
    /// and moves them to the beginning of the file.
    fn discard_oldest(&mut self, keep: u64) -> io::Result<()> {
        if !self.readable {
            // We can't read back what we'd keep: start over.
            self.file.set_len(0)?;
            self.pos = 0;
            return Ok(());
        }
        let mut buf = [0u8; MOVE_CHUNK];
        // Start of the first whole line within the last `keep` bytes: just
        // after the newline that precedes it (or at the end: keep nothing).
        let mut from = self.pos.saturating_sub(keep);
        if from > 0 {
            let mut scan = from - 1;
            from = self.pos;
            'search: while scan < self.pos {
                let n = read_some_at(&self.file, &mut buf, scan, self.pos)?;
                if n == 0 {
                    break;
                }
                if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
                    from = scan + i as u64 + 1;
                    break 'search;
                }
                scan += n as u64;
            }
        }

        let mut to = 0;
        let mut at = from;
        while at < self.pos {
            let n = read_some_at(&self.file, &mut buf, at, self.pos)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&buf[..n], to)?;
            at += n as u64;
            to += n as u64;
        }
        self.file.set_len(to)?;
        self.pos = to;
        Ok(())
    }
}

/// Reads up to `buf.len()` bytes at `offset`, not past `end`.
fn read_some_at(file: &File, buf: &mut [u8], offset: u64, end: u64) -> io::Result<usize> {
    let want = usize::try_from(end - offset)
        .unwrap_or(usize::MAX)
        .min(buf.len());
    file.read_at(&mut buf[..want], offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Read;

    fn temp_log(name: &str) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!(
            "passt-rs-logtest-{}-{name}.log",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        // As the caller opens it: append mode.
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .read(true)
            .open(&path)
            .expect("create temp log");
        (path, f)
    }

    fn contents(path: &std::path::Path) -> String {
        let mut s = String::new();
        File::open(path)
            .expect("reopen temp log")
            .read_to_string(&mut s)
            .expect("read temp log");
        s
    }

    #[test]
    fn file_stays_under_cap_and_keeps_newest_lines() {
        let (path, f) = temp_log("cap");
        const MAX: u64 = 1000;
        let mut sink = FileSink::new(f, MAX).expect("file sink");
        for i in 0..500 {
            let line = format!("{i}.000: message number {i}\n");
            sink.write_line(line.as_bytes()).expect("write");
            let len = std::fs::metadata(&path).expect("stat").len();
            assert!(len <= MAX, "file grew to {len} bytes after line {i}");
        }
        let text = contents(&path);
        assert!(text.ends_with("499.000: message number 499\n"), "{text}");
        // Whole lines only, consecutive, newest last.
        let nums: Vec<u32> = text
            .lines()
            .map(|l| {
                let (ts, msg) = l.split_once(": ").expect("timestamped line");
                let n: u32 = msg
                    .strip_prefix("message number ")
                    .expect("whole line")
                    .parse()
                    .expect("number");
                assert_eq!(ts, format!("{n}.000"));
                n
            })
            .collect();
        assert!(nums.len() > 10, "kept only {} lines", nums.len());
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn write_only_file_is_emptied_when_full() {
        let (path, f) = temp_log("wronly");
        drop(f);
        let f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open write-only");
        let mut sink = FileSink::new(f, 100).expect("file sink");
        for i in 0..20 {
            sink.write_line(format!("line {i:02}\n").as_bytes())
                .expect("write");
            assert!(std::fs::metadata(&path).expect("stat").len() <= 100);
        }
        let text = contents(&path);
        assert!(text.ends_with("line 19\n"), "{text}");
        assert!(text.lines().all(|l| l.len() == 7), "{text}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn existing_content_is_kept_and_oversized_line_is_cut() {
        let (path, mut f) = temp_log("existing");
        f.write_all(b"old line\n").expect("seed");
        let mut sink = FileSink::new(f, 64).expect("file sink");
        sink.write_line(b"new line\n").expect("write");
        assert_eq!(contents(&path), "old line\nnew line\n");

        let long = format!("{}\n", "x".repeat(200));
        sink.write_line(long.as_bytes()).expect("write");
        let text = contents(&path);
        assert!(text.len() <= 64, "{}", text.len());
        assert!(text.ends_with('\n'));
        assert!(text.chars().filter(|&c| c == '\n').count() == 1, "{text}");
        let _ = std::fs::remove_file(&path);
    }

    fn local_state(sink: Sink) -> State {
        State {
            prog: "pasta",
            sink,
            line: String::new(),
        }
    }

    #[test]
    fn syslog_datagram_format() {
        let path =
            std::env::temp_dir().join(format!("passt-rs-logtest-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind fake syslog");
        let path_str = path.to_str().expect("UTF-8 temp path");
        let mut st = local_state(syslog_sink(path_str));
        st.emit(Level::Warn, format_args!("two\nlines {}", 42));
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("datagram");
        let expected = format!("<28>pasta[{}]: two lines 42", std::process::id());
        assert_eq!(std::str::from_utf8(&buf[..n]).expect("UTF-8"), expected);
        let _ = std::fs::remove_file(&path);

        assert!(matches!(syslog_sink("/nonexistent/log"), Sink::Nothing));
    }

    #[test]
    fn file_lines_are_timestamped() {
        let (path, f) = temp_log("stamp");
        let mut st = local_state(Sink::File(FileSink::new(f, 4096).expect("file sink")));
        st.emit(Level::Info, format_args!("hello"));
        let text = contents(&path);
        let (ts, msg) = text.split_once(": ").expect("timestamp separator");
        let (secs, millis) = ts.split_once('.').expect("seconds.millis");
        assert!(secs.parse::<u64>().is_ok() && millis.len() == 3, "{text}");
        assert_eq!(msg, "hello\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn syslog_priority() {
        assert_eq!(LOG_DAEMON | severity(Level::Error), 27);
        assert_eq!(LOG_DAEMON | severity(Level::Info), 30);
        assert_eq!(LOG_DAEMON | severity(Level::Trace), 31);
    }
}
