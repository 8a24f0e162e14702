//! The secret an application's instances share, and what it proves: that a claim on the
//! membership topic, or a query forwarded from another instance, comes from an instance of the
//! application and not from whoever can write the topic or reach the port.
//!
//! Each claim (and each tombstone) carries `weir-mac`, an HMAC-SHA256 over the topic, the
//! instance id and the claim's bytes; a forwarded query carries `weir-proof`, one over the
//! sending instance and the path it asks for. A claim or a query that does not verify is
//! ignored, and logged. The secret is `weir serve --claim-secret-file`, else
//! `$WEIR_CLAIM_SECRET`, else the admin token; `weir run --admin` takes `$WEIR_CLAIM_SECRET`,
//! else a random one, which believes only its own claims.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header of a claim's MAC on the membership topic.
pub const CLAIM_MAC: &str = "weir-mac";

/// The shared secret. Cheap to clone.
#[derive(Clone)]
pub struct ClaimKey {
    secret: Arc<[u8]>,
}

impl std::fmt::Debug for ClaimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimKey(..)")
    }
}

impl Default for ClaimKey {
    /// A random secret: this process believes only itself.
    fn default() -> Self {
        let mut secret = [0u8; 32];
        let mut filled = 0;
        while filled < secret.len() {
            let rest = &mut secret[filled..];
            // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            // It fails only when interrupted (EINTR); it is then asked again.
            if n > 0 {
                filled += n as usize;
            }
        }
        Self { secret: Arc::from(&secret[..]) }
    }
}

impl ClaimKey {
    pub fn new(secret: &[u8]) -> Self {
        Self { secret: Arc::from(secret) }
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        // Any key length is accepted by HMAC.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        for part in parts {
            // Each part with its length, so no two lists of parts sign alike.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The MAC of `parts`, hex.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    /// Whether `given` (hex) is the MAC of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], given: &[u8]) -> bool {
        let Some(given) = std::str::from_utf8(given).ok().and_then(|g| hex::decode(g.trim()).ok()) else {
            return false;
        };
        self.mac(parts).verify_slice(&given).is_ok()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_claim_verifies_only_under_the_secret_and_the_parts_it_was_signed_with() {
        let key = ClaimKey::new(b"the fleet's secret");
        let mac = key.sign(&[b"topic", b"a", b"{}"]);
        assert!(key.verify(&[b"topic", b"a", b"{}"], mac.as_bytes()));
        assert!(!key.verify(&[b"topic", b"b", b"{}"], mac.as_bytes()), "another instance");
        assert!(!key.verify(&[b"topic", b"a{", b"}"], mac.as_bytes()), "parts shifted");
        assert!(!ClaimKey::new(b"a forger's guess").verify(&[b"topic", b"a", b"{}"], mac.as_bytes()));
        assert!(!ClaimKey::default().verify(&[b"topic", b"a", b"{}"], mac.as_bytes()));
        assert!(!key.verify(&[b"topic", b"a", b"{}"], b"not hex"));
    }
}
