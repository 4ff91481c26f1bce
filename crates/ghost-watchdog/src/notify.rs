//! systemd's notification protocol (`sd_notify(3)`), the few lines of it the
//! watchdog needs, without libsystemd: one datagram of `KEY=VALUE` lines to the
//! Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract
//! socket). The watchdog sends `READY=1` once every child is up, `STATUS=…`
//! as they change, `WATCHDOG=1` every half `WATCHDOG_USEC`, `RELOADING=1` on
//! SIGHUP and `STOPPING=1` on stop.
//!
//! Without `NOTIFY_SOCKET` nothing is sent. Children never see these variables
//! (the spawner removes them), so only the watchdog speaks for the service.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variables of the protocol, removed from children's environment.
pub const ENV_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    name: String,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, if set. An unusable value is an error (the
    /// caller logs it and runs on without notifications).
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(v) if !v.is_empty() => Notifier::new(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// For a socket named as in `NOTIFY_SOCKET`: `/path` or `@abstract`.
    pub fn new(name: &str) -> io::Result<Notifier> {
        let addr = if let Some(abs) = name.strip_prefix('@') {
            abstract_addr(abs.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET={name:?}: only /path and @abstract sockets are supported"),
            ));
        };
        Ok(Notifier {
            sock: UnixDatagram::unbound()?,
            addr,
            name: name.to_string(),
        })
    }

    /// Send one message (newline-separated `KEY=VALUE` lines).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        let n = self.sock.send_to_addr(msg.as_bytes(), &self.addr)?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to NOTIFY_SOCKET",
            ));
        }
        Ok(())
    }

    /// The socket's name as given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it is set
/// and `WATCHDOG_PID` (if set) is this process.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval_from_env`] with the values given.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str().unwrap()).unwrap();
        n.send("READY=1\nSTATUS=3 of 3 children running").unwrap();
        assert_eq!(recv(&server), "READY=1\nSTATUS=3 of 3 children running");
        n.send("WATCHDOG=1").unwrap();
        assert_eq!(recv(&server), "WATCHDOG=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ghost-watchdog-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::new(&format!("@{name}")).unwrap();
        n.send("STOPPING=1").unwrap();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[test]
    fn from_env_reads_notify_socket() {
        // The one test that touches the process environment.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("n.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        let n = Notifier::from_env().unwrap().expect("set");
        std::env::remove_var("NOTIFY_SOCKET");
        n.send("READY=1").unwrap();
        assert_eq!(recv(&server), "READY=1");
        assert!(Notifier::from_env().unwrap().is_none());
    }

    #[test]
    fn unsupported_names_are_errors() {
        assert!(Notifier::new("vsock:2:1234").is_err());
        assert!(Notifier::new("relative/path").is_err());
    }

    #[test]
    fn a_missing_socket_is_an_error_on_send_not_a_panic() {
        let n = Notifier::new("/nonexistent/dir/sock").unwrap();
        assert!(n.send("READY=1").is_err());
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_this_pid() {
        assert_eq!(
            watchdog_interval(Some("20000000"), None, 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            watchdog_interval(Some("20000000"), Some("7"), 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(watchdog_interval(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }
}
