//! Where the secrets live (docs/http.md, "Authentication"; docs/formats.md):
//! each one's file under `state/secrets/`, its environment variable and its
//! configuration key, for the process that loads it (the bridge, the monitor)
//! and for the watchdog's banner, which says where a secret is, never what.
//!
//! Only locations live here; reading and generating a secret is its owner's
//! business, and a secret's value never reaches a log.

use std::path::PathBuf;

use crate::layout::Layout;

/// Every secret a ghostbridge process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The bridge's bearer token.
    BridgeToken,
    /// The bridge's HMAC-SHA256 key.
    HmacKey,
    /// The monitor's dashboard token.
    DashboardToken,
}

impl SecretKind {
    pub const ALL: [SecretKind; 3] = [
        SecretKind::BridgeToken,
        SecretKind::HmacKey,
        SecretKind::DashboardToken,
    ];

    /// The file name in `state/secrets/`.
    pub const fn file_name(self) -> &'static str {
        match self {
            SecretKind::BridgeToken => "bridge_token",
            SecretKind::HmacKey => "hmac_key",
            SecretKind::DashboardToken => "dashboard_token",
        }
    }

    /// The environment variable that overrides the file.
    pub const fn env_var(self) -> &'static str {
        match self {
            SecretKind::BridgeToken => "GHOST_BRIDGE_TOKEN",
            SecretKind::HmacKey => "GHOST_HMAC_KEY",
            SecretKind::DashboardToken => "GHOST_DASHBOARD_TOKEN",
        }
    }

    /// The configuration key that overrides both, if there is one.
    pub const fn config_key(self) -> Option<&'static str> {
        match self {
            SecretKind::BridgeToken => Some("bridge.token"),
            SecretKind::HmacKey => Some("bridge.hmac_key"),
            SecretKind::DashboardToken => None,
        }
    }
}

/// `state/secrets/<file>`.
pub fn path(layout: &Layout, kind: SecretKind) -> PathBuf {
    layout.secrets().join(kind.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_has_its_own_file_and_variable() {
        let l = Layout::new("/r");
        let mut files: Vec<PathBuf> = SecretKind::ALL.iter().map(|k| path(&l, *k)).collect();
        let mut vars: Vec<&str> = SecretKind::ALL.iter().map(|k| k.env_var()).collect();
        files.dedup();
        vars.dedup();
        assert_eq!((files.len(), vars.len()), (3, 3));
        assert_eq!(
            path(&l, SecretKind::BridgeToken),
            PathBuf::from("/r/state/secrets/bridge_token")
        );
    }
}
