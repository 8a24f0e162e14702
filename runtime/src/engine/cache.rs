//! Compiled components cached on disk, so a restart loads in milliseconds what took seconds to
//! compile (a Python component: 7 to 9 s).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// A directory of precompiled components, named by a hash of the component's bytes and of
/// everything in the engine's configuration that affects compiled code.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// The cache at `dir` (made, mode 0700, when missing), once it is known that only weir's own
    /// user can write there. A cached component is loaded as native code, trusted as it is: a
    /// file another user could put there would run outside the Wasm sandbox.
    pub fn checked(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
        let dir = dir.into();
        let refuse = |why: String| anyhow::anyhow!("the component cache {}: {why}", dir.display());
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| refuse(e.to_string()))?;
        let meta = std::fs::metadata(&dir).map_err(|e| refuse(e.to_string()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(refuse(format!(
                "it belongs to uid {}, not to weir's user (uid {me}); compiled components are loaded from it as native code",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "other users may write to it (mode {:o}); compiled components are loaded from it as native code: \
                 `chmod go-w` it or choose another with --cache-dir",
                meta.mode() & 0o777
            )));
        }
        Ok(Self { dir })
    }

    /// `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir/components`, else `~/.cache/weir/components`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("weir").join("components"))
    }

    fn path_for(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> PathBuf {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut engine_hash);
        let digest = Sha256::new().chain_update(engine_hash.finish().to_le_bytes()).chain_update(bytes).finalize();
        self.dir.join(format!("{}.cwasm", hex::encode(&digest[..16])))
    }

    /// The component compiled from `bytes`, from the cache when present and loadable; otherwise
    /// compiled and stored. A cache that cannot be written only costs the next start a compile.
    pub fn load(&self, engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.path_for(engine, bytes);
        if path.exists() {
            // SAFETY: the file was written by `precompile_component` of an engine with the same
            // compatibility hash (it is in the name), and is replaced only by atomic renames.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring unusable cached component: {e}"),
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        // SAFETY: produced just above by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        if let Err(e) = write_atomically(&path, &compiled) {
            tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
        }
        Ok((component, CacheOutcome::Compiled))
    }
}

/// Whether a load hit the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Compiled,
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
