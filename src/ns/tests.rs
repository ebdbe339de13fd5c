//! Kernel tests: real namespaces, real processes, no mocks.
//!
//! `prepare` must run single-threaded and may join a user namespace
//! process-wide, but `cargo test` runs tests as threads of one process. So
//! each test forks a child (one thread, like pasta at start-up) that plays
//! pasta and reports back, one line at a time, over a pipe. The parent
//! never waits for end-of-file on that pipe: concurrent tests fork too, and
//! their children hold copies of our descriptors for a while.
//!
//! The tests need root (namespaces, `ip netns`) and fail loudly without
//! it. The unprivileged cases drop to `nobody` inside the child, as
//! `setpriv --reuid 65534` would.

use super::*;
use crate::sys::process::fork_child;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Gid, Pid, Uid};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a test child may take before we kill it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

fn require_root() {
    assert!(
        Uid::effective().is_root(),
        "namespace tests need root (they create namespaces and use `ip netns`)"
    );
}

fn cfg(target: NsTarget) -> PastaConfig {
    PastaConfig {
        netns_only: matches!(target, NsTarget::Path(_)),
        target,
        userns: None,
        no_netns_quit: false,
        config_net: false,
        no_copy_routes: false,
        no_copy_addrs: false,
        ns_ifname: "tap0".into(),
        ns_mac: None,
        no_splice: false,
        splice_only: false,
        host_lo_to_ns_lo: false,
    }
}

fn sh(script: &str) -> NsTarget {
    NsTarget::Spawn(vec!["sh".into(), "-c".into(), script.into()])
}

/// Become `nobody` as `setpriv --reuid 65534 --regid 65534 --clear-groups`
/// would. Dropping IDs makes a process non-dumpable (its /proc files turn
/// root-owned) where an `exec` would have made it dumpable again, so we do
/// that by hand.
fn become_nobody() -> Result<(), String> {
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setgid(Gid::from_raw(65534)).map_err(|e| format!("setgid: {e}"))?;
    nix::unistd::setuid(Uid::from_raw(65534)).map_err(|e| format!("setuid: {e}"))?;
    nix::sys::prctl::set_dumpable(true).map_err(|e| format!("dumpable: {e}"))
}

/// The network namespace link of the calling thread, e.g. "net:[4026531840]".
fn my_netns() -> String {
    link("/proc/thread-self/ns/net")
}

fn link(path: &str) -> String {
    std::fs::read_link(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("{path}: {e}"))
}

/// Wait up to `ms` for `fd` to be readable.
fn readable_within(fd: BorrowedFd<'_>, ms: u16) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// What a test child sends to its parent.
struct Report(std::fs::File);

impl Report {
    fn send(&mut self, line: &str) {
        let line = line.replace('\n', " | ");
        let _ = self.0.write_all(format!("{line}\n").as_bytes());
    }
}

/// A forked test child; killed and reaped on drop.
struct Kid {
    pid: Pid,
    out: std::fs::File,
    buf: Vec<u8>,
    reaped: bool,
}

/// Fork a child running `f`. It sends "ok" or "err MESSAGE" as its last
/// line; `f` may send progress lines before.
fn fork_test(f: impl FnOnce(&mut Report) -> Result<(), String>) -> Kid {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let pid = fork_child(move || {
        let mut rep = Report(std::fs::File::from(w));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut rep)));
        let (line, code) = match outcome {
            Ok(Ok(())) => ("ok".to_owned(), 0),
            Ok(Err(e)) => (format!("err {e}"), 1),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                (format!("err panic: {msg}"), 101)
            }
        };
        rep.send(&line);
        code
    })
    .expect("fork");
    Kid {
        pid: Pid::from_raw(pid),
        out: std::fs::File::from(r),
        buf: Vec::new(),
        reaped: false,
    }
}

impl Kid {
    /// The next line the child sent, waiting at most until `deadline`.
    fn line_by(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            if ms == 0 || !readable_within(self.out.as_fd(), ms) {
                return Err("test child timed out".into());
            }
            let mut chunk = [0u8; 4096];
            match self.out.read(&mut chunk) {
                Ok(0) => return Err("test child died without reporting".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading from test child: {e}")),
            }
        }
    }

    /// The next progress line; panics if the child reports an error instead.
    fn progress(&mut self) -> String {
        let line = self
            .line_by(Instant::now() + CHILD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(e) = line.strip_prefix("err ") {
            panic!("{e}");
        }
        line
    }

    /// Wait for the final line and the child's exit; panic on failure.
    fn finish(mut self) {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            match self.line_by(deadline) {
                Ok(l) if l == "ok" => break,
                Ok(l) if l.starts_with("err ") => panic!("{}", &l[4..]),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let _ = waitpid(self.pid, None);
        self.reaped = true;
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// A network namespace from `ip netns add`, deleted on drop.
struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "passt-rs-ns-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip").args(["netns", "add", &name]).output();
        let out = out.expect("running `ip netns add`");
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        Self { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A process we started, killed and reaped on drop.
struct ProcGuard(std::process::Child);

impl ProcGuard {
    /// Start `argv` and wait until it has become `comm` (e.g. `unshare`
    /// has set up its namespaces and executed `sleep`).
    fn start(argv: &[&str], comm: &str) -> Result<Self, String> {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .spawn()
            .map_err(|e| format!("{}: {e}", argv[0]))?;
        let g = Self(child);
        let path = format!("/proc/{}/comm", g.pid());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == comm) {
            if Instant::now() > deadline {
                return Err(format!("{argv:?} never became {comm}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(g)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Point our stdout at an unlinked temporary file, so a spawned command's
/// output can be read back; returns the file.
fn capture_stdout() -> Result<std::fs::File, String> {
    let path = std::env::temp_dir().join(format!("passt-rs-ns-out-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    nix::unistd::dup2_stdout(&f).map_err(|e| format!("dup2: {e}"))?;
    Ok(f)
}

fn read_back(mut f: std::fs::File) -> Result<String, String> {
    let mut s = String::new();
    f.rewind().map_err(|e| e.to_string())?;
    f.read_to_string(&mut s).map_err(|e| e.to_string())?;
    Ok(s)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

// ---- Spawn ---------------------------------------------------------------

fn spawn_exit_codes(nobody: bool) {
    require_root();
    for (script, want) in [("exit 7", 7), ("kill -9 $$", 137)] {
        fork_test(move |_| {
            if nobody {
                become_nobody()?;
            }
            let mut t = Target::prepare(&cfg(sh(script))).map_err(err)?;
            check(t.joined_userns() == nobody, || "joined_userns".into())?;
            t.release().map_err(err)?;
            let code = t.spawned().ok_or("no child")?.wait().map_err(err)?;
            check(code == want, || {
                format!("`{script}` gave {code}, want {want}")
            })
        })
        .finish();
    }
}

#[test]
fn spawn_exit_codes_as_root() {
    spawn_exit_codes(false);
}

#[test]
fn spawn_exit_codes_as_nobody() {
    spawn_exit_codes(true);
}

/// The command runs as root in its own user, network and PID namespaces,
/// which `run_in` sees too, with `lo` up.
fn spawn_inside(nobody: bool, netns_only: bool) {
    require_root();
    fork_test(move |_| {
        if nobody {
            become_nobody()?;
        }
        let out = capture_stdout()?;
        let (our_net, our_user) = (my_netns(), link("/proc/self/ns/user"));
        // The last test tells whether /proc was mounted for the new PID
        // namespace: its PID 1 is then in our own PID namespace.
        let script = "id -u; readlink /proc/self/ns/net; readlink /proc/self/ns/user; \
                      echo $$; ip -o link show lo; \
                      [ $(readlink /proc/1/ns/pid) = $(readlink /proc/self/ns/pid) ] && echo proc";
        let mut c = cfg(sh(script));
        c.netns_only = netns_only;
        let mut t = Target::prepare(&c).map_err(err)?;
        let seen = t.run_in(my_netns).map_err(err)?;
        bring_up_loopback(&t).map_err(err)?;
        t.release().map_err(err)?;
        let code = t.spawned().ok_or("no child")?.wait().map_err(err)?;
        let text = read_back(out)?;
        check(code == 0, || format!("exit code {code}: {text}"))?;
        let lines: Vec<&str> = text.lines().collect();
        let [uid, net, user, pid, lo, proc] = lines[..] else {
            return Err(format!("unexpected output: {text}"));
        };
        check(uid == "0", || format!("id -u inside is {uid}"))?;
        check(net != our_net, || format!("command shares our netns {net}"))?;
        check(net == seen, || {
            format!("command in {net}, run_in in {seen}")
        })?;
        check((user != our_user) != netns_only, || {
            format!("command user namespace {user}, ours {our_user}")
        })?;
        check(pid == "2", || format!("command is PID {pid}, want 2"))?;
        check(lo.contains(",UP"), || format!("lo not up: {lo}"))?;
        check(proc == "proc", || {
            "/proc not mounted for the PID namespace".into()
        })
    })
    .finish();
}

#[test]
fn spawn_inside_as_root() {
    spawn_inside(false, false);
}

#[test]
fn spawn_inside_as_nobody() {
    spawn_inside(true, false);
}

#[test]
fn spawn_netns_only_as_root() {
    spawn_inside(false, true);
}

#[test]
fn spawn_missing_command() {
    require_root();
    fork_test(|_| {
        let c = cfg(NsTarget::Spawn(vec!["/nonexistent/passt-rs-cmd".into()]));
        let mut t = Target::prepare(&c).map_err(err)?;
        let e = t.release().err().ok_or("release succeeded")?;
        let want = "can't run /nonexistent/passt-rs-cmd: No such file or directory";
        check(e.to_string() == want, || format!("got {e}"))?;
        let code = t.spawned().ok_or("no child")?.wait().map_err(err)?;
        check(code == 127, || format!("exit code {code}"))
    })
    .finish();
}

/// Processes whose network namespace link is `ns`.
fn processes_in(ns: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn spawn_leaves_nothing_behind() {
    require_root();
    let mut kid = fork_test(|rep| {
        let c = cfg(NsTarget::Spawn(vec!["sleep".into(), "1000".into()]));
        let mut t = Target::prepare(&c).map_err(err)?;
        t.release().map_err(err)?;
        rep.send(&t.run_in(my_netns).map_err(err)?);
        std::thread::sleep(CHILD_TIMEOUT);
        Ok(())
    });
    let ns = kid.progress();
    assert!(!processes_in(&ns).is_empty(), "sleep isn't running in {ns}");
    // pasta dies without cleaning up: its helper, init and command follow.
    drop(kid);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_in(&ns);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind in {ns}: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn prepare_refuses_to_fork_with_threads() {
    // The test harness itself has more than one thread.
    let e = Target::prepare(&cfg(sh("true"))).unwrap_err();
    assert!(matches!(e, NsError::Threaded(n) if n > 1), "{e}");
}

#[test]
fn disabled_user_namespaces_are_diagnosed() {
    require_root();
    fork_test(|_| {
        // user.max_user_namespaces is per user namespace: set it to 0 in a
        // throw-away one of our own, not for the whole machine.
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(err)?;
        std::fs::write("/proc/sys/user/max_user_namespaces", "0").map_err(err)?;
        let e = Target::prepare(&cfg(sh("true")))
            .err()
            .ok_or("prepare succeeded")?;
        let want = "user namespaces are disabled (user.max_user_namespaces=0)";
        check(e.to_string() == want, || format!("got {e}"))
    })
    .finish();
}

// ---- Pid -------------------------------------------------------------------

/// Join the namespace of a process from `argv`; its end fires the watch.
fn pid_target(nobody: bool) {
    require_root();
    fork_test(move |_| {
        if nobody {
            become_nobody()?;
        }
        let argv: &[&str] = if nobody {
            &["unshare", "-rn", "sleep", "30"]
        } else {
            &["unshare", "-n", "sleep", "30"]
        };
        let proc = ProcGuard::start(argv, "sleep")?;
        let pid = proc.pid();
        let theirs = link(&format!("/proc/{pid}/ns/net"));
        let t = Target::prepare(&cfg(NsTarget::Pid(pid))).map_err(err)?;
        check(t.joined_userns() == nobody, || "joined_userns".into())?;
        let seen = t.run_in(my_netns).map_err(err)?;
        check(seen == theirs && seen != my_netns(), || {
            format!("run_in in {seen}, target {theirs}")
        })?;
        bring_up_loopback(&t).map_err(err)?;
        let mut w = t.quit_watch().map_err(err)?.ok_or("no quit watch")?;
        check(!w.gone(), || "gone while running".into())?;
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(err)?;
        check(readable_within(w.as_fd(), 1000), || {
            "no wake-up within 1 s".into()
        })?;
        check(w.gone(), || "not gone after kill".into())
    })
    .finish();
}

#[test]
fn pid_target_as_root() {
    pid_target(false);
}

#[test]
fn pid_target_as_nobody() {
    pid_target(true);
}

#[test]
fn missing_pid() {
    let e = Target::prepare(&cfg(NsTarget::Pid(i32::MAX as u32))).unwrap_err();
    assert_eq!(e.to_string(), "/proc/2147483647/ns/net: No such process");
    let e = Target::prepare(&cfg(NsTarget::Pid(u32::MAX))).unwrap_err();
    assert_eq!(e.to_string(), "/proc/4294967295/ns/net: No such process");
}

// ---- Path ------------------------------------------------------------------

#[test]
fn path_target() {
    require_root();
    let ns = NetnsGuard::new();
    let (name, path) = (ns.name.clone(), ns.path());
    fork_test(move |_| {
        let t = Target::prepare(&cfg(NsTarget::Path(path.clone()))).map_err(err)?;
        let seen = t.run_in(my_netns).map_err(err)?;
        let ino = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&path).map_err(err)?.ino()
        };
        check(seen == format!("net:[{ino}]"), || {
            format!("run_in in {seen}, not {ino}")
        })?;
        bring_up_loopback(&t).map_err(err)?;
        let links = t
            .run_in(|| Netlink::new().and_then(|mut nl| nl.links()))
            .map_err(err)?
            .map_err(err)?;
        check(links.iter().any(|l| l.name == "lo" && l.up), || {
            "lo is down".into()
        })?;
        let mut w = t.quit_watch().map_err(err)?.ok_or("no quit watch")?;
        check(!w.gone(), || "gone before deletion".into())?;
        let out = Command::new("ip").args(["netns", "del", &name]).output();
        check(out.is_ok_and(|o| o.status.success()), || {
            "ip netns del".into()
        })?;
        check(readable_within(w.as_fd(), 1000), || {
            "no wake-up within 1 s".into()
        })?;
        check(w.gone() && w.gone(), || "not gone after deletion".into())
    })
    .finish();
}

#[test]
fn path_removed_before_watch_fires_at_once() {
    require_root();
    let ns = NetnsGuard::new();
    let (name, path) = (ns.name.clone(), ns.path());
    fork_test(move |_| {
        let t = Target::prepare(&cfg(NsTarget::Path(path))).map_err(err)?;
        let out = Command::new("ip").args(["netns", "del", &name]).output();
        check(out.is_ok_and(|o| o.status.success()), || {
            "ip netns del".into()
        })?;
        let mut w = t.quit_watch().map_err(err)?.ok_or("no quit watch")?;
        check(readable_within(w.as_fd(), 0), || "not readable".into())?;
        check(w.gone(), || "not gone".into())
    })
    .finish();
}

#[test]
fn no_netns_quit_means_no_watch() {
    require_root();
    let ns = NetnsGuard::new();
    let mut c = cfg(NsTarget::Path(ns.path()));
    c.no_netns_quit = true;
    let t = Target::prepare(&c).unwrap();
    assert!(t.quit_watch().unwrap().is_none());
}

#[test]
fn path_errors() {
    assert!(!Path::new("/x").exists(), "/x exists on this machine");
    let e = Target::prepare(&cfg(NsTarget::Path("/x".into()))).unwrap_err();
    assert_eq!(e.to_string(), "--netns /x: No such file or directory");
    let e = Target::prepare(&cfg(NsTarget::Path("/proc/self/ns/user".into()))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--netns /proc/self/ns/user: not a network namespace"
    );
    let e = Target::prepare(&cfg(NsTarget::Path("/".into()))).unwrap_err();
    assert_eq!(e.to_string(), "--netns /: not a network namespace");
    let mut c = cfg(NsTarget::Path("/proc/self/ns/net".into()));
    c.userns = Some("/y".into());
    c.netns_only = false;
    let e = Target::prepare(&c).unwrap_err();
    assert_eq!(e.to_string(), "--userns /y: No such file or directory");
}

// ---- Worker ----------------------------------------------------------------

/// pasta as root drops to nobody after set-up; the worker entered before
/// and still opens sockets in a root-owned namespace afterwards.
#[test]
fn worker_survives_privilege_drop() {
    require_root();
    let ns = NetnsGuard::new();
    let path = ns.path();
    let mut kid = fork_test(move |rep| {
        let t = Target::prepare(&cfg(NsTarget::Path(path))).map_err(err)?;
        bring_up_loopback(&t).map_err(err)?;
        let inside = t.run_in(my_netns).map_err(err)?;
        let worker = t.worker().map_err(err)?;
        become_nobody()?;
        match t.run_in(|| ()) {
            Err(NsError::EnterNetns {
                errno: nix::errno::Errno::EPERM,
                ..
            }) => {}
            other => return Err(format!("run_in as nobody: {other:?}")),
        }
        check(worker.run(my_netns).map_err(err)? == inside, || {
            "worker left the namespace".into()
        })?;
        let listener = worker
            .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(err)?
            .map_err(err)?;
        let port = listener.local_addr().map_err(err)?.port();
        rep.send(&port.to_string());
        // Keep the listener open until the parent has looked.
        std::thread::sleep(CHILD_TIMEOUT);
        drop(listener);
        Ok(())
    });
    let port = kid.progress();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ss", "-ltnH"])
        .output()
        .expect("ip netns exec ss");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("127.0.0.1:{port} ")),
        "port {port} not listening in {}: {text}",
        ns.name
    );
}

#[test]
fn worker_passes_panics_on_and_keeps_going() {
    require_root();
    let ns = NetnsGuard::new();
    let t = Target::prepare(&cfg(NsTarget::Path(ns.path()))).unwrap();
    let w = t.worker().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.run(|| -> u8 { panic!("job failed") })
    }));
    assert!(r.is_err());
    assert_eq!(w.run(|| 42).unwrap(), 42);
}
