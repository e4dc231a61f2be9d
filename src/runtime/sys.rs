//! Raw socket, descriptor, rlimit and signal calls (libc), wrapped so the rest of shardis
//! stays safe (syslog(3) too). Called from the main thread at startup (rlimits, listen,
//! signal mask, openlog), any thread that logs (syslog), the
//! signals thread, shard threads per connection (accept setup, close) and CONFIG SET
//! maxclients (RLIMIT_NOFILE); `spawn_helper` for the threads shards start (file writers,
//! fsync, lazy freeing, replication links), which run unpinned.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its size.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub(crate) fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// A non-blocking-agnostic TCP socket for an outgoing connection (replication links,
/// sentinel probes): connect it with `Ring::connect`.
pub fn tcp_socket(ipv6: bool) -> io::Result<RawFd> {
    let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2) call.
    cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })
}

/// A TCP socket for `addr`'s family with SO_REUSEADDR (and SO_REUSEPORT when asked), bound
/// to `addr`. Closed again on error.
fn bound_socket(addr: SocketAddr, reuseport: bool) -> io::Result<RawFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2) call.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    let setup = || -> io::Result<()> {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if reuseport {
            setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        let (ss, len) = to_sockaddr(addr);
        // SAFETY: `ss` is a valid sockaddr of length `len`.
        cvt(unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
        Ok(())
    };
    match setup() {
        Ok(()) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// Checks that nothing listens on `addr` yet: binds a plain socket (SO_REUSEADDR only, so
/// connections of an earlier run in TIME_WAIT do not count) and closes it. The shards'
/// SO_REUSEPORT listeners would otherwise join those of another shardis on the same port
/// and split its clients with it, where Redis refuses to start.
pub fn check_port_free(addr: SocketAddr) -> io::Result<()> {
    close(bound_socket(addr, false)?);
    Ok(())
}

/// A listening TCP socket with SO_REUSEADDR and SO_REUSEPORT, so every shard binds the same
/// port and the kernel spreads new connections over them.
pub fn listen_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<RawFd> {
    let fd = bound_socket(addr, true)?;
    // SAFETY: plain listen(2) on our socket.
    if let Err(e) = cvt(unsafe { libc::listen(fd, backlog) }) {
        close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// A listening Unix domain socket at `path`, as Redis opens it: a file left there (by a
/// server that did not stop cleanly) is removed first, then the socket is bound, given
/// `perm` (when not 0) and listened on with `backlog`.
pub fn listen_unix(path: &str, backlog: i32, perm: u32) -> io::Result<RawFd> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let fd = std::os::unix::net::UnixListener::bind(path)?.into_raw_fd();
    let setup = || -> io::Result<()> {
        if perm != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm))?;
        }
        // SAFETY: plain listen(2) on our socket (again, to set the backlog).
        cvt(unsafe { libc::listen(fd, backlog) })?;
        Ok(())
    };
    match setup() {
        Ok(()) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// Per-connection socket options: TCP_NODELAY (replies must not wait for Nagle) and
/// `tcp-keepalive` (a dead peer is noticed and its connection closed).
pub fn setup_conn(fd: RawFd, nodelay: bool, keepalive_secs: u64) {
    if nodelay {
        let _ = setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    }
    // tcp-keepalive (Redis's anetKeepAlive): probes after `keepalive_secs` idle, then every
    // third of it, the peer dropped after 3 unanswered.
    if keepalive_secs > 0 {
        let idle = keepalive_secs.min(i32::MAX as u64) as i32;
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
        let _ = setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle);
        let _ = setsockopt_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            (idle / 3).max(1),
        );
        let _ = setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
    }
}

/// The peer and local addresses of a connected socket.
pub fn addrs(fd: RawFd) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let get = |peer: bool| {
        // SAFETY: zeroed sockaddr_storage is valid; the kernel fills at most `len` bytes.
        let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let p = (&mut ss as *mut libc::sockaddr_storage).cast();
        // SAFETY: `p` points to `len` writable bytes.
        let r = unsafe {
            if peer {
                libc::getpeername(fd, p, &mut len)
            } else {
                libc::getsockname(fd, p, &mut len)
            }
        };
        if r < 0 {
            None
        } else {
            from_sockaddr(&ss)
        }
    };
    (get(true), get(false))
}

/// Shuts a socket down both ways: any receive in flight on the ring completes with 0.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor we own; errors are harmless here.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Fills `buf` from the kernel's random source (getrandom(2)). False if it could not.
pub fn random_bytes(buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            return false;
        };
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes for the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        got += n as usize;
    }
    true
}

/// Closes a descriptor we own.
pub fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// Current and maximum RLIMIT_MEMLOCK in bytes (`u64::MAX` for unlimited).
pub fn memlock_limit() -> (u64, u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0 {
        return (0, 0);
    }
    (rl.rlim_cur, rl.rlim_max)
}

/// Tries to raise RLIMIT_MEMLOCK's soft limit to `want` bytes (bounded by the hard limit).
pub fn raise_memlock(want: u64) -> u64 {
    let (cur, max) = memlock_limit();
    if cur >= want {
        return cur;
    }
    let target = want.min(max);
    let rl = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: max as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rl) } == 0 {
        target
    } else {
        cur
    }
}

/// Current (soft) and maximum (hard) RLIMIT_NOFILE: the descriptors the process may hold.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) })?;
    Ok((rl.rlim_cur, rl.rlim_max))
}

/// Sets RLIMIT_NOFILE's soft limit to `cur`, keeping the hard limit (which only a privileged
/// process could raise, and which we leave as the administrator set it).
pub fn set_nofile(cur: u64) -> io::Result<()> {
    let (_, max) = nofile_limit()?;
    let rl = libc::rlimit {
        rlim_cur: cur as libc::rlim_t,
        rlim_max: max as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }).map(|_| ())
}

/// Descriptors the process holds right now (stdio and whatever it inherited), counted in
/// /proc/self/fd; 3 (stdio) when that cannot be read.
pub fn open_fds() -> u64 {
    match std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries.
        Ok(d) => (d.count() as u64).saturating_sub(1).max(3),
        Err(_) => 3,
    }
}

/// Puts the calling thread under SCHED_BATCH: like the normal policy, but a wakeup never
/// preempts the running thread (the woken one waits for the tick or for the runner to
/// sleep). Shards that share a core then hand work over once per loop pass instead of
/// switching on every message.
pub fn set_sched_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 = the calling thread; `param` is a valid sched_param for SCHED_BATCH.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Process CPU time (user, system) in seconds, for INFO's used_cpu_* fields.
pub fn cpu_times() -> (f64, f64) {
    rusage(libc::RUSAGE_SELF)
}

/// The calling thread's CPU time (user, system) in seconds: INFO's
/// `used_cpu_*_main_thread`, read on the shard thread that answers it.
pub fn thread_cpu_times() -> (f64, f64) {
    rusage(libc::RUSAGE_THREAD)
}

fn rusage(who: libc::c_int) -> (f64, f64) {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live rusage; `who` is RUSAGE_SELF or RUSAGE_THREAD.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

/// Blocks SIGINT/SIGTERM/SIGPIPE in the calling thread (and threads it spawns later), so a
/// dedicated thread can wait for them with `wait_signal`; ignores SIGHUP and SIGXFSZ.
pub fn block_signals() {
    // SAFETY: sigset manipulation on a local set, then pthread_sigmask on this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // As redis-server: SIGHUP (a closed terminal, a log rotation script) is ignored.
        // SIGUSR1/SIGUSR2 keep their default action, as there.
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        // A write past RLIMIT_FSIZE must fail with EFBIG (a failed BGSAVE), not kill the
        // process: Redis's writer is a forked child, shardis's a thread of the server.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Waits for SIGINT or SIGTERM (which must be blocked) and returns the signal number.
pub fn wait_signal() -> i32 {
    // SAFETY: sigwait on a local set of blocked signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}

/// Sends SIGTERM to our own process (SHUTDOWN command).
pub fn terminate_self() {
    // SAFETY: kill(2) on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
}

/// Writes a short message to a fresh socket and closes it (rejecting a client).
pub fn write_and_close(fd: RawFd, msg: &[u8]) {
    // SAFETY: writes from a live slice to a descriptor we own, then closes it.
    unsafe {
        let _ = libc::send(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        );
    }
    close(fd);
}

/// `daemonize yes`: forks; the parent exits at once with status 0, the child starts a new
/// session and points standard input, output and error at /dev/null (as redis-server's
/// daemonize()). Must run before any thread is started: only the calling thread survives
/// a fork.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: fork has no memory-safety preconditions; the caller guarantees no other
    // thread exists, so the child's copy of the process is consistent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        std::process::exit(0);
    }
    // SAFETY: setsid takes no arguments and only changes this process's session.
    unsafe { libc::setsid() };
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for fd in 0..3 {
        // SAFETY: `null` is an open descriptor for the duration of the call; dup2 onto the
        // standard descriptors only replaces them.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
    Ok(())
}

/// `syslog-facility` names (Redis's: `user`, `local0`..`local7`) and their values.
pub const SYSLOG_FACILITIES: &[(&str, libc::c_int)] = &[
    ("user", libc::LOG_USER),
    ("local0", libc::LOG_LOCAL0),
    ("local1", libc::LOG_LOCAL1),
    ("local2", libc::LOG_LOCAL2),
    ("local3", libc::LOG_LOCAL3),
    ("local4", libc::LOG_LOCAL4),
    ("local5", libc::LOG_LOCAL5),
    ("local6", libc::LOG_LOCAL6),
    ("local7", libc::LOG_LOCAL7),
];

/// openlog(3) with Redis's options (the pid in every message, connect now, do not wait).
/// Called once, at startup; the ident string lives for the rest of the process.
pub fn open_syslog(ident: &str, facility: libc::c_int) {
    let ident = std::ffi::CString::new(ident.replace('\0', "")).unwrap_or_default();
    // openlog keeps the pointer: the string must never be freed.
    let ident: &'static std::ffi::CStr = Box::leak(ident.into_boxed_c_str());
    // SAFETY: `ident` is a NUL-terminated string that lives until the process ends.
    unsafe {
        libc::openlog(
            ident.as_ptr(),
            libc::LOG_PID | libc::LOG_NDELAY | libc::LOG_NOWAIT,
            facility,
        )
    };
}

/// syslog(3) of one message at `priority` (LOG_DEBUG..LOG_WARNING), passed through "%s" so
/// it is never read as a format.
pub fn syslog(priority: libc::c_int, msg: &str) {
    let Ok(m) = std::ffi::CString::new(msg.replace('\0', "")) else {
        return;
    };
    // SAFETY: both arguments are NUL-terminated strings alive for the call; the format
    // takes exactly one string argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), m.as_ptr()) };
}

/// The CPU mask the process started with, before shard threads pinned themselves.
static START_MASK: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();

/// Remembers the calling thread's CPU mask as the one helper threads run on (called on the
/// main thread before any shard pins itself).
pub fn remember_start_affinity() {
    // SAFETY: cpu_set_t is plain old data; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: passes a pointer to a live cpu_set_t and its exact size.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r == 0 {
        let _ = START_MASK.set(set);
    }
}

/// Spawns a helper thread (a file writer, the fsync thread, lazy freeing, a replication
/// link) that runs on the CPUs the process started with, not only on the core of the shard
/// that spawned it: a thread inherits its creator's pinning, and a BGSAVE writer pinned to
/// its shard's core would take that core from the shard's clients while it runs.
pub fn spawn_helper<F, T>(name: &str, f: F) -> io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Some(set) = START_MASK.get() {
                // SAFETY: passes a pointer to a live cpu_set_t and its exact size.
                unsafe {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
                }
            }
            f()
        })
}
