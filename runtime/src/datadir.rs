//! What `weir serve` keeps on disk to come back as it was after a crash:
//!
//! ```text
//! DIR/weir.lock                 held (flock) by the one `weir serve` on this dir; holds its pid
//! DIR/admin.token               the bearer token of mutating requests (mode 0600)
//! DIR/modules/<sha256>.wasm     every module version, by content, stored once it loaded
//! DIR/pipelines/<name>.json     a pipeline's versions (file text, module digest), the live one,
//!                               paused or not (mode 0600: a file's `[kafka]` can hold passwords)
//! DIR/state/                    state stores of pipelines whose file names no state_dir
//! ```
//!
//! Every file is written to a temporary name, synced, renamed and its folder synced, so a crash
//! leaves the old or the new file, never half of one. Names become paths only after
//! [`crate::config::id_ok`] said yes.

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
    /// For a pipeline of stages, each stage's module by stage name; `digest` is then the digest
    /// of them all ([`stages_digest`]) and `module_name` says how many there are.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stages: std::collections::BTreeMap<String, StageModule>,
}

/// One stage's module in a [`Version`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageModule {
    /// SHA-256 of the module, hex.
    pub digest: String,
    /// Its file name as deployed.
    pub module_name: String,
}

impl Version {
    /// The digest of every module file this version runs.
    pub fn digests(&self) -> Vec<&str> {
        match self.stages.is_empty() {
            true => vec![self.digest.as_str()],
            false => self.stages.values().map(|m| m.digest.as_str()).collect(),
        }
    }

    /// The module (digest, file name) of `stage`, or of the one module of a pipeline without
    /// stages.
    pub fn module_of(&self, stage: &str) -> Option<(&str, &str)> {
        match self.stages.is_empty() {
            true => Some((&self.digest, &self.module_name)),
            false => self.stages.get(stage).map(|m| (m.digest.as_str(), m.module_name.as_str())),
        }
    }
}

/// The digest of a version of stages: SHA-256 over each stage's name and module digest.
pub fn stages_digest(stages: &std::collections::BTreeMap<String, StageModule>) -> String {
    let text: String = stages.iter().map(|(name, m)| format!("{name} {}\n", m.digest)).collect();
    digest(text.as_bytes())
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

/// The data dir, locked for this process while any clone of it lives.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    /// Besides `root/state`, where a pipeline file's `state_dir` may point (`--state-root`).
    state_roots: Vec<PathBuf>,
    _lock: std::sync::Arc<std::fs::File>,
}

/// A `pipelines/*.json` that could not be read back, and why.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// The pipeline's name, from the file's name.
    pub name: String,
    /// What is wrong, naming the file.
    pub error: String,
}

/// SHA-256 of `bytes`, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("{what} {}: {e}", path.display())
}

/// Writes `bytes` to `path` (created with `mode`) through a temporary file: synced, renamed,
/// and the folder synced, so after a crash `path` holds the old bytes or the new, and the rename
/// itself is durable.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("cannot create", &tmp, e))?;
    // `mode` applies only to a file created now; an older temporary keeps its own.
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| io("cannot set the mode of", &tmp, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename into", path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync", dir, e))
}

/// Locks `root/weir.lock` for this process (flock, released when the process ends however it
/// ends) and writes this pid in it; a dir another process holds is refused naming its pid.
fn lock(root: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::fd::AsRawFd as _;
    let path = root.join("weir.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("cannot open", &path, e))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        if err.kind() == std::io::ErrorKind::WouldBlock {
            anyhow::bail!(
                "the data dir {} is in use by another weir (pid {}); one weir serve per data dir",
                root.display(),
                holder.trim()
            );
        }
        return Err(io("cannot lock", &path, err));
    }
    file.set_len(0).and_then(|()| file.rewind()).map_err(|e| io("cannot write", &path, e))?;
    writeln!(file, "{}", std::process::id())
        .and_then(|()| file.sync_all())
        .map_err(|e| io("cannot write", &path, e))?;
    Ok(file)
}

impl DataDir {
    /// Opens (creating) the data dir at `root`, and locks it: a second process on the same dir
    /// is refused with the holder's pid.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| io("cannot create", root, e))?;
        let lock = lock(root)?;
        for sub in ["modules", "pipelines", "state"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        }
        Ok(Self { root: root.to_path_buf(), state_roots: Vec::new(), _lock: std::sync::Arc::new(lock) })
    }

    /// Lets pipeline files keep their state under `roots` too (`weir serve --state-root`); each
    /// must be an absolute path to a folder that exists.
    pub fn with_state_roots(mut self, roots: &[PathBuf]) -> anyhow::Result<Self> {
        for root in roots {
            let real = root.canonicalize().map_err(|e| io("--state-root", root, e))?;
            if !real.is_dir() {
                anyhow::bail!("--state-root {} is not a folder", root.display());
            }
            self.state_roots.push(real);
        }
        Ok(self)
    }

    /// Where a deployed file's `state_dir` may point: inside the data dir's `state/` or a
    /// `--state-root`, by a plain absolute path (no `..`, and no link that leads out: the
    /// deepest part that exists is resolved before the check).
    pub fn confine(&self, state_dir: &Path) -> Result<(), String> {
        let refuse = || {
            let mut allowed = vec![self.state_dir().display().to_string()];
            allowed.extend(self.state_roots.iter().map(|r| r.display().to_string()));
            format!(
                "state_dir `{}` is outside what this weir serve allows ({}); \
                 the operator can allow a folder with `weir serve --state-root DIR`",
                state_dir.display(),
                allowed.join(", ")
            )
        };
        if !state_dir.is_absolute()
            || state_dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir))
        {
            return Err(refuse());
        }
        // The deepest ancestor that exists, with links resolved, then the rest as written.
        let mut existing = state_dir;
        let mut rest = Vec::new();
        let real = loop {
            match existing.canonicalize() {
                Ok(real) => break real,
                Err(_) => match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name.to_owned());
                        existing = parent;
                    }
                    _ => return Err(refuse()),
                },
            }
        };
        let real = rest.iter().rev().fold(real, |path, part| path.join(part));
        let own = self.state_dir().canonicalize().map_err(|e| format!("{}: {e}", self.state_dir().display()))?;
        match std::iter::once(&own).chain(&self.state_roots).any(|root| real.starts_with(root)) {
            true => Ok(()),
            false => Err(refuse()),
        }
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
            write_atomic(&path, bytes, 0o644)?;
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
        write_atomic(&self.deployment_path(&deployment.name), &text, 0o600)?;
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

    /// Every recorded pipeline, by name; a file that cannot be read back is listed apart with
    /// why, so one bad file does not keep the others from starting.
    pub fn deployments(&self) -> anyhow::Result<(Vec<Deployment>, Vec<Unreadable>)> {
        let dir = self.root.join("pipelines");
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(&dir).map_err(|e| io("cannot read", &dir, e))? {
            let path = entry.map_err(|e| io("cannot read", &dir, e))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let read = std::fs::read(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| {
                    serde_json::from_slice::<Deployment>(&text)
                        .map_err(|e| format!("{}: not a weir deployment record: {e}", path.display()))
                })
                .and_then(|d| match d.name == name {
                    true => Ok(d),
                    false => Err(format!("{}: records pipeline `{}`, not `{name}`", path.display(), d.name)),
                });
            match read {
                Ok(deployment) => out.push(deployment),
                Err(error) => bad.push(Unreadable { name, error }),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        bad.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((out, bad))
    }

    /// Deletes the module files no kept version refers to.
    fn collect_modules(&self) -> anyhow::Result<()> {
        let (deployments, unreadable) = self.deployments()?;
        if !unreadable.is_empty() {
            // What an unreadable file refers to is unknown: keep every module until it is mended.
            return Ok(());
        }
        let kept: std::collections::HashSet<String> = deployments
            .iter()
            .flat_map(|d| d.versions.iter().flat_map(Version::digests))
            .map(|d| format!("{d}.wasm"))
            .collect();
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
        write_atomic(&path, token.as_bytes(), 0o600)?;
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
            stages: Default::default(),
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

    #[test]
    fn a_state_dir_is_confined_to_the_data_dir_and_the_roots_the_operator_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        let data =
            DataDir::open(&dir.path().join("data")).unwrap().with_state_roots(std::slice::from_ref(&allowed)).unwrap();
        data.confine(&data.state_dir().join("x")).unwrap();
        data.confine(&allowed.join("team-a")).unwrap();
        std::os::unix::fs::symlink("/", allowed.join("escape")).unwrap();
        for bad in [
            PathBuf::from("/"),
            PathBuf::from("relative/dir"),
            dir.path().join("data"),
            data.state_dir().join("..").join(".."),
            allowed.join("escape").join("etc"),
            dir.path().join("elsewhere"),
        ] {
            let err = data.confine(&bad).unwrap_err();
            assert!(err.contains("--state-root"), "{}: {err}", bad.display());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, ..Default::default() })]

        /// Whatever path a deployer writes, one `confine` accepts resolves inside the data
        /// dir's `state/` or an allowed root, through `..`, `.` and links that lead out.
        #[test]
        fn a_state_dir_confine_accepts_resolves_inside_an_allowed_root(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["..", ".", "a", "b", "out", "state", "allowed", "data"]), 0..7),
            from_root in proptest::bool::ANY,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let allowed = dir.path().join("allowed");
            std::fs::create_dir_all(allowed.join("a")).unwrap();
            std::fs::create_dir_all(dir.path().join("b")).unwrap();
            let data = DataDir::open(&dir.path().join("data")).unwrap().with_state_roots(std::slice::from_ref(&allowed)).unwrap();
            std::fs::create_dir_all(data.state_dir()).unwrap();
            std::os::unix::fs::symlink(dir.path().join("b"), data.state_dir().join("out")).unwrap();
            std::os::unix::fs::symlink(dir.path(), allowed.join("out")).unwrap();
            let base = if from_root { dir.path().to_path_buf() } else { data.state_dir() };
            let path = parts.iter().fold(base, |p, part| p.join(part));
            if data.confine(&path).is_ok() {
                // As weir makes it (`create_dir_all` trips on a trailing `.`).
                let path: PathBuf = path.components().collect();
                std::fs::create_dir_all(&path).unwrap();
                let real = path.canonicalize().unwrap();
                let roots = [data.state_dir().canonicalize().unwrap(), allowed.canonicalize().unwrap()];
                proptest::prop_assert!(roots.iter().any(|r| real.starts_with(r)), "{} -> {}", path.display(), real.display());
            }
        }
    }

    #[test]
    fn a_second_open_of_a_data_dir_is_refused_naming_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        DataDir::open(dir.path()).unwrap();
    }

    #[test]
    fn pipeline_records_are_private_and_an_unreadable_one_is_listed_apart() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let mut d = Deployment { name: "good".into(), paused: false, live: 0, versions: Vec::new() };
        d.push(version(1));
        data.save(&d).unwrap();
        let mode = std::fs::metadata(dir.path().join("pipelines/good.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join("pipelines/broken.json"), b"{ not json").unwrap();
        let (good, bad) = data.deployments().unwrap();
        assert_eq!(good, vec![d]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].name, "broken");
        assert!(bad[0].error.contains("broken.json"), "{}", bad[0].error);
    }
}
