//! MD5 as lowercase hex: the checksum every summary, journal and precondition uses.

use md5::{Digest, Md5};

/// Lowercase hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// True when `s` looks like an MD5 in hex (32 hex digits, either case).
pub fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_vector() {
        assert_eq!(super::md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert!(super::is_md5_hex("D41d8cd98f00b204e9800998ecf8427e"));
        assert!(!super::is_md5_hex("xyz"));
    }
}
