//! The dashboard's token, and what a request must carry to be let in.
//!
//! The token comes from `GHOST_DASHBOARD_TOKEN`, else `state/secrets/dashboard_token`,
//! which is generated at the first start (32 random bytes as hex, mode 0600,
//! one durable write). It is never logged: only where it came from is.
//!
//! A browser signs in once (the sign-in form, or the `/?token=…` link) and
//! then carries a cookie; an API client sends `Authorization: Bearer TOKEN`.
//! The cookie holds a value derived from the token, not the token, and so does
//! the CSRF token every POST must carry in `X-CSRF-Token`: both are SHA-256 of
//! the token under a fixed label, so they survive a restart and change with
//! the token. Comparisons are constant-time.

use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use ghost_core::secrets::SecretKind;
use ghost_core::{Error, Layout, Result};

/// The cookie's name.
pub const COOKIE: &str = "ghost_dashboard";

/// Where the token came from (shown in the log; the value never is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Environment,
    File { path: PathBuf, generated: bool },
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Environment => write!(f, "${}", SecretKind::DashboardToken.env_var()),
            TokenSource::File { path, generated } => {
                write!(f, "{}", path.display())?;
                if *generated {
                    f.write_str(" (generated now)")?;
                }
                Ok(())
            }
        }
    }
}

/// The token and what is derived from it. `Debug` shows no secret.
pub struct Auth {
    token_digest: [u8; 32],
    session: String,
    csrf: String,
    pub source: TokenSource,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn labelled(label: &str, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(token.as_bytes());
    h.finalize().into()
}

fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl Auth {
    pub fn new(token: &str, source: TokenSource) -> Auth {
        Auth {
            token_digest: labelled("token", token),
            session: hex::encode(labelled("ghost-dashboard-session", token)),
            csrf: hex::encode(labelled("ghost-dashboard-csrf", token)),
            source,
        }
    }

    /// Load the token (see the module comment), generating the file if needed.
    pub fn load(layout: &Layout) -> Result<Auth> {
        let kind = SecretKind::DashboardToken;
        if let Ok(v) = std::env::var(kind.env_var()) {
            let v = v.trim().to_string();
            if v.is_empty() {
                return Err(Error::Invalid(format!(
                    "${} is set but empty; unset it to use {}",
                    kind.env_var(),
                    layout.secret(kind).display()
                )));
            }
            return Ok(Auth::new(&v, TokenSource::Environment));
        }
        let path = layout.secret(kind);
        if let Some(bytes) = ghost_core::fs::read_opt(&path)? {
            let v = String::from_utf8_lossy(&bytes).trim().to_string();
            if v.is_empty() {
                return Err(Error::Invalid(format!(
                    "{} is empty; remove it to have a new token generated, or write one into it",
                    path.display()
                )));
            }
            return Ok(Auth::new(
                &v,
                TokenSource::File {
                    path,
                    generated: false,
                },
            ));
        }
        let mut raw = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .map_err(|e| Error::io("read", "/dev/urandom", e))?;
        let v = hex::encode(raw);
        ghost_core::fs::ensure_dir(&layout.secrets())?;
        ghost_core::fs::durable_write(&path, v.as_bytes(), ghost_core::fs::FILE_MODE)?;
        Ok(Auth::new(
            &v,
            TokenSource::File {
                path,
                generated: true,
            },
        ))
    }

    /// The token itself, as presented (Bearer, sign-in form, `?token=`).
    pub fn token_ok(&self, presented: &str) -> bool {
        eq(&labelled("token", presented.trim()), &self.token_digest)
    }

    /// The cookie's value.
    pub fn session(&self) -> &str {
        &self.session
    }

    pub fn session_ok(&self, presented: &str) -> bool {
        eq(presented.as_bytes(), self.session.as_bytes())
    }

    /// The CSRF token pages and API clients send back in `X-CSRF-Token`.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn csrf_ok(&self, presented: &str) -> bool {
        eq(presented.as_bytes(), self.csrf.as_bytes())
    }

    /// `Set-Cookie` for a signed-in browser.
    pub fn set_cookie(&self) -> String {
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            self.session
        )
    }
}

/// `Set-Cookie` that signs a browser out.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Decode `application/x-www-form-urlencoded` (a query or a form body) into pairs.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values_check_and_never_equal_the_token() {
        let a = Auth::new("s3cret", TokenSource::Environment);
        assert!(a.token_ok("s3cret") && a.token_ok(" s3cret\n"));
        assert!(!a.token_ok("s3cret2") && !a.token_ok(""));
        assert!(a.session_ok(a.session()) && !a.session_ok("s3cret"));
        assert!(a.csrf_ok(a.csrf()) && !a.csrf_ok(a.session()));
        assert!(!a.set_cookie().contains("s3cret"));
        assert!(a.set_cookie().contains("HttpOnly") && a.set_cookie().contains("SameSite=Strict"));
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn the_token_file_is_generated_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::new(d.path());
        // The environment may carry a token in a developer's shell.
        if std::env::var_os(SecretKind::DashboardToken.env_var()).is_some() {
            eprintln!("skipped: GHOST_DASHBOARD_TOKEN is set in this environment");
            return;
        }
        let a = Auth::load(&layout).unwrap();
        assert!(matches!(
            a.source,
            TokenSource::File {
                generated: true,
                ..
            }
        ));
        let p = layout.secret(SecretKind::DashboardToken);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(&p).unwrap();
        assert_eq!(token.len(), 64);
        let b = Auth::load(&layout).unwrap();
        assert!(matches!(
            b.source,
            TokenSource::File {
                generated: false,
                ..
            }
        ));
        assert!(b.token_ok(&token));
    }

    #[test]
    fn cookies_and_forms_parse() {
        assert_eq!(
            cookie_value("a=1; ghost_dashboard=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", COOKIE), None);
        assert_eq!(
            form_pairs("token=a%2Bb+c&x="),
            vec![("token".into(), "a+b c".into()), ("x".into(), "".into())]
        );
        assert_eq!(form_pairs("t=%zz%4"), vec![("t".into(), "%zz%4".into())]);
    }
}
