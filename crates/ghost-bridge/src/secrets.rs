//! The bridge's two secrets: the bearer token and the HMAC-SHA256 key.
//!
//! Each comes from the first of: the configuration (`bridge.token`,
//! `bridge.hmac_key`), the environment (`GHOST_BRIDGE_TOKEN`, `GHOST_HMAC_KEY`),
//! or a file in `state/secrets/` (`bridge_token`, `hmac_key`), which is created
//! on first start with 32 random bytes from `/dev/urandom` as hex, mode 0600.
//!
//! Invariant: a secret's value never reaches a log or a `Debug` rendering. Only
//! where it came from (a path, "environment", "configuration") is ever shown.

use ghost_core::config::ConfigSecret;
use ghost_core::secrets::SecretKind;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use ghost_core::fs::{durable_write, read_opt, FILE_MODE};
use ghost_core::{Config, Error, Layout, Result};

/// Environment variable for the bearer token.
pub const TOKEN_ENV: &str = SecretKind::BridgeToken.env_var();
/// Environment variable for the HMAC key.
pub const HMAC_ENV: &str = SecretKind::HmacKey.env_var();
/// File name of the generated bearer token in `state/secrets/`.
pub const TOKEN_FILE: &str = SecretKind::BridgeToken.file_name();
/// File name of the generated HMAC key in `state/secrets/`.
pub const HMAC_FILE: &str = SecretKind::HmacKey.file_name();

/// A secret value. Its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for comparing and signing only; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The configuration key (e.g. `bridge.token`).
    Configuration(&'static str),
    /// The environment variable (e.g. `GHOST_BRIDGE_TOKEN`).
    Environment(&'static str),
    /// A file under `state/secrets/`; `generated` when this start created it.
    File { path: PathBuf, generated: bool },
}

impl SecretSource {
    /// The file holding the secret, when it lives in one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            SecretSource::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Configuration(k) => write!(f, "configuration ({k})"),
            SecretSource::Environment(v) => write!(f, "environment ({v})"),
            SecretSource::File { path, generated } => {
                write!(f, "{}", path.display())?;
                if *generated {
                    f.write_str(" (generated)")?;
                }
                Ok(())
            }
        }
    }
}

/// The bridge's secrets and where each came from. `Debug` shows only the sources.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub token: Secret,
    pub token_source: SecretSource,
    pub hmac_key: Secret,
    pub hmac_source: SecretSource,
}

/// Load (or generate) both secrets for the root, reading the process environment.
pub fn load(cfg: &Config, layout: &Layout) -> Result<Secrets> {
    load_with_env(cfg, layout, |k| std::env::var(k).ok())
}

/// [`load`] with the environment given as a function (for tests).
pub fn load_with_env(
    cfg: &Config,
    layout: &Layout,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secrets> {
    let (token, token_source) = load_one(
        cfg.bridge.token.as_ref().map(ConfigSecret::expose),
        "bridge.token",
        env(TOKEN_ENV),
        TOKEN_ENV,
        &layout.secret(SecretKind::BridgeToken),
    )?;
    let (hmac_key, hmac_source) = load_one(
        cfg.bridge.hmac_key.as_ref().map(ConfigSecret::expose),
        "bridge.hmac_key",
        env(HMAC_ENV),
        HMAC_ENV,
        &layout.secret(SecretKind::HmacKey),
    )?;
    Ok(Secrets {
        token,
        token_source,
        hmac_key,
        hmac_source,
    })
}

fn load_one(
    configured: Option<&str>,
    key: &'static str,
    from_env: Option<String>,
    var: &'static str,
    file: &Path,
) -> Result<(Secret, SecretSource)> {
    if let Some(v) = configured {
        let v = v.trim();
        if v.is_empty() {
            // An empty token would let an empty `Bearer` through: refuse it.
            return Err(Error::Invalid(format!(
                "{key}: must not be empty (remove the key to use {var} or a generated secret)"
            )));
        }
        return Ok((Secret::new(v), SecretSource::Configuration(key)));
    }
    // An empty variable (`GHOST_BRIDGE_TOKEN=`) is treated as unset.
    if let Some(v) = from_env.map(|v| v.trim().to_string()) {
        if !v.is_empty() {
            return Ok((Secret::new(v), SecretSource::Environment(var)));
        }
    }
    if let Some(bytes) = read_opt(file)? {
        let text = String::from_utf8(bytes).map_err(|_| Error::Corrupt {
            what: "secret file",
            path: file.to_path_buf(),
            reason: "not UTF-8 text; delete it to have a new secret generated".into(),
        })?;
        let v = text.trim();
        if v.is_empty() {
            return Err(Error::Corrupt {
                what: "secret file",
                path: file.to_path_buf(),
                reason: "empty; delete it to have a new secret generated".into(),
            });
        }
        tighten_mode(file);
        return Ok((
            Secret::new(v),
            SecretSource::File {
                path: file.to_path_buf(),
                generated: false,
            },
        ));
    }
    let value = random_hex(32)?;
    let mut bytes = value.clone().into_bytes();
    bytes.push(b'\n');
    if let Some(d) = file.parent() {
        ghost_core::fs::ensure_dir(d)?;
    }
    durable_write(file, &bytes, FILE_MODE)?;
    Ok((
        Secret::new(value),
        SecretSource::File {
            path: file.to_path_buf(),
            generated: true,
        },
    ))
}

/// A secret file readable by others is narrowed to 0600 (and said so).
fn tighten_mode(file: &Path) {
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        #[allow(clippy::disallowed_methods)]
        // narrowing a mode in place; rewriting the secret would risk it
        let fixed =
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(FILE_MODE)).is_ok();
        warn!(event = "SECRET_FILE_MODE", path = %file.display(), mode = format!("{mode:o}"), fixed, "secret file was readable by others; set to 0600");
    }
}

/// `n` random bytes from `/dev/urandom`, as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let path = Path::new("/dev/urandom");
    let mut buf = vec![0u8; n];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::io("read random bytes", path, e))?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn setup(extra: &str) -> (tempfile::TempDir, Config, Layout) {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::from_toml(d.path(), extra, "test").unwrap();
        let layout = Layout::new(d.path());
        layout.create(["default"]).unwrap();
        (d, cfg, layout)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn generates_once_with_mode_0600_then_reloads() {
        let (_d, cfg, layout) = setup("");
        let s = load_with_env(&cfg, &layout, no_env).unwrap();
        let tp = layout.secrets().join(TOKEN_FILE);
        assert_eq!(
            s.token_source,
            SecretSource::File {
                path: tp.clone(),
                generated: true
            }
        );
        assert_eq!(s.token.expose().len(), 64);
        assert!(s.token.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(s.token, s.hmac_key);
        for f in [TOKEN_FILE, HMAC_FILE] {
            let m = std::fs::metadata(layout.secrets().join(f)).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
        }
        let again = load_with_env(&cfg, &layout, no_env).unwrap();
        assert_eq!(again.token, s.token);
        assert_eq!(again.hmac_key, s.hmac_key);
        assert_eq!(
            again.token_source,
            SecretSource::File {
                path: tp,
                generated: false
            }
        );
    }

    #[test]
    fn configuration_beats_environment_beats_file() {
        let (_d, cfg, layout) = setup("[bridge]\ntoken = \"from-config\"\n");
        let env = |k: &str| match k {
            TOKEN_ENV => Some("from-env".to_string()),
            HMAC_ENV => Some("key-from-env".to_string()),
            _ => None,
        };
        let s = load_with_env(&cfg, &layout, env).unwrap();
        assert_eq!(s.token.expose(), "from-config");
        assert_eq!(s.token_source, SecretSource::Configuration("bridge.token"));
        assert_eq!(s.hmac_key.expose(), "key-from-env");
        assert_eq!(s.hmac_source, SecretSource::Environment(HMAC_ENV));
        // Nothing was generated for secrets that came from elsewhere.
        assert!(!layout.secrets().join(TOKEN_FILE).exists());
        assert!(!layout.secrets().join(HMAC_FILE).exists());
        // An empty variable counts as unset.
        let (_d2, cfg2, layout2) = setup("");
        let s2 = load_with_env(&cfg2, &layout2, |_| Some(String::new())).unwrap();
        assert!(s2.token_source.path().is_some());
    }

    #[test]
    fn empty_configured_or_stored_secret_is_an_error() {
        let (_d, cfg, layout) = setup("[bridge]\ntoken = \"  \"\n");
        let e = load_with_env(&cfg, &layout, no_env).unwrap_err();
        assert!(e.to_string().contains("bridge.token"), "{e}");
        let (_d, cfg, layout) = setup("");
        let p = layout.secrets().join(TOKEN_FILE);
        durable_write(&p, b"\n", FILE_MODE).unwrap();
        let e = load_with_env(&cfg, &layout, no_env).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn stored_secret_is_trimmed_and_its_mode_narrowed() {
        let (_d, cfg, layout) = setup("");
        let p = layout.secrets().join(TOKEN_FILE);
        durable_write(&p, b"  hand-written\n", 0o644).unwrap();
        let s = load_with_env(&cfg, &layout, no_env).unwrap();
        assert_eq!(s.token.expose(), "hand-written");
        let m = std::fs::metadata(Path::new(&p)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn debug_never_shows_the_value() {
        let (_d, cfg, layout) = setup("[bridge]\ntoken = \"sekrit-value\"\nhmac_key = \"k3y\"\n");
        let s = load_with_env(&cfg, &layout, no_env).unwrap();
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("sekrit-value") && !dbg.contains("k3y"),
            "{dbg}"
        );
        assert!(dbg.contains("redacted"));
        assert_eq!(s.token_source.to_string(), "configuration (bridge.token)");
    }
}
