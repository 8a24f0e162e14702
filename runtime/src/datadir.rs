//! What `weir serve` keeps on disk to come back as it was after a crash:
//!
//! ```text
//! DIR/admin.token               the bearer token of mutating requests (mode 0600)
//! DIR/modules/<sha256>.wasm     every module version, by content
//! DIR/pipelines/<name>.json     a pipeline's versions (file text, module digest), the live one, paused or not
//! DIR/state/                    state stores of pipelines whose file names no state_dir
//! ```
//!
//! Every file is written to a temporary name and renamed, so a crash leaves the old or the new
//! file, never half of one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How many versions of a pipeline are kept (for rollbacks).
pub const KEPT_VERSIONS: usize = 5;

/// One deployed version of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    pub version: u32,
    /// SHA-256 of the module, hex.
    pub digest: String,
    /// The module's file name as deployed (names it in errors and logs).
    pub module_name: String,
    /// The pipeline file's text.
    pub pipeline: String,
    /// When it was deployed, ms since the epoch.
    pub deployed_at: u64,
}

/// A pipeline as the data dir records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployment {
    pub name: String,
    pub paused: bool,
    /// The version that runs.
    pub live: u32,
    /// The last [`KEPT_VERSIONS`], oldest first.
    pub versions: Vec<Version>,
}

impl Deployment {
    pub fn live(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == self.live)
    }

    /// The next version number.
    pub fn next_number(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }

    /// The newest kept version older than the live one.
    pub fn previous(&self) -> Option<&Version> {
        self.versions.iter().filter(|v| v.version < self.live).max_by_key(|v| v.version)
    }

    /// Adds `version` and makes it live, forgetting the oldest beyond [`KEPT_VERSIONS`].
    pub fn push(&mut self, version: Version) {
        self.live = version.version;
        self.versions.push(version);
        while self.versions.len() > KEPT_VERSIONS {
            self.versions.remove(0);
        }
    }
}

/// The data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// SHA-256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("{what} {}: {e}", path.display())
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| io("cannot write", &tmp, e))?;
    let file = std::fs::File::open(&tmp).map_err(|e| io("cannot open", &tmp, e))?;
    file.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename into", path, e))
}

impl DataDir {
    /// Opens (creating) the data dir at `root`.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        for sub in ["modules", "pipelines", "state"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        }
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where pipelines whose file names no `state_dir` keep their stores.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn module_path(&self, digest: &str) -> PathBuf {
        self.root.join("modules").join(format!("{digest}.wasm"))
    }

    /// Stores module bytes under their digest (once).
    pub fn put_module(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let digest = digest(bytes);
        let path = self.module_path(&digest);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    pub fn module(&self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.module_path(digest);
        std::fs::read(&path).map_err(|e| io("cannot read module", &path, e))
    }

    fn deployment_path(&self, name: &str) -> PathBuf {
        self.root.join("pipelines").join(format!("{name}.json"))
    }

    pub fn save(&self, deployment: &Deployment) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(deployment)?;
        write_atomic(&self.deployment_path(&deployment.name), &text)?;
        self.collect_modules()
    }

    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        let path = self.deployment_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot remove", &path, e)),
        }
        self.collect_modules()
    }

    /// Every recorded pipeline, by name.
    pub fn deployments(&self) -> anyhow::Result<Vec<Deployment>> {
        let dir = self.root.join("pipelines");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io("cannot read", &dir, e))? {
            let path = entry.map_err(|e| io("cannot read", &dir, e))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path).map_err(|e| io("cannot read", &path, e))?;
                let deployment: Deployment = serde_json::from_slice(&text)
                    .map_err(|e| anyhow::anyhow!("{}: not a weir deployment record: {e}", path.display()))?;
                out.push(deployment);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes the module files no kept version refers to.
    fn collect_modules(&self) -> anyhow::Result<()> {
        let kept: std::collections::HashSet<String> =
            self.deployments()?.iter().flat_map(|d| d.versions.iter().map(|v| format!("{}.wasm", v.digest))).collect();
        let dir = self.root.join("modules");
        for entry in std::fs::read_dir(&dir).map_err(|e| io("cannot read", &dir, e))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wasm") && !kept.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// The admin token: the file's, or a new random one written there (mode 0600).
    pub fn token(&self) -> anyhow::Result<String> {
        let path = self.root.join("admin.token");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let token = text.trim().to_owned();
            if !token.is_empty() {
                return Ok(token);
            }
        }
        let token = hex::encode(rand_bytes()?);
        write_private(&path, token.as_bytes())?;
        Ok(token)
    }
}

/// 32 random bytes from the operating system.
fn rand_bytes() -> anyhow::Result<[u8; 32]> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom for the admin token: {e}"))?;
    Ok(bytes)
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("cannot create", &tmp, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename into", path, e))
}

#[cfg(test)]
mod test {
    use super::*;

    fn version(n: u32) -> Version {
        Version {
            version: n,
            digest: format!("d{n}"),
            module_name: "m".into(),
            pipeline: String::new(),
            deployed_at: 0,
        }
    }

    #[test]
    fn a_deployment_keeps_the_last_five_versions_and_rolls_back_to_the_one_before_the_live_one() {
        let mut d = Deployment { name: "p".into(), paused: false, live: 0, versions: Vec::new() };
        for n in 1..=7 {
            d.push(version(n));
        }
        assert_eq!(d.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [3, 4, 5, 6, 7]);
        assert_eq!(d.previous().map(|v| v.version), Some(6));
        d.live = 3;
        assert_eq!(d.previous(), None);
        assert_eq!(d.next_number(), 8);
    }

    #[test]
    fn the_admin_token_is_made_once_and_only_its_owner_may_read_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let token = data.token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(data.token().unwrap(), token);
        let mode = std::fs::metadata(dir.path().join("admin.token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
