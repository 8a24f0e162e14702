//! `weir serve`: a supervisor over a data dir, its pipelines started as they were left, and the
//! HTTP API in front, until SIGTERM or SIGINT (every pipeline then commits and leaves its group).
//! Also `weir run --admin`: the read-only routes beside one pipeline.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::admin;
use crate::datadir::DataDir;
use crate::engine::{ComponentCache, Engine, EngineOptions};
use crate::metrics::Metrics;
use crate::query::claims::ClaimKey;
use crate::query::membership::Advertise;
use crate::supervisor::{Site, Supervisor};

/// What `weir serve` was asked for.
pub struct Serve {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub max_upload_mib: usize,
    pub cache_dir: Option<PathBuf>,
    /// Meter fuel on every guest (a pipeline's `fuel` then applies).
    pub fuel: bool,
    pub max_instances: u32,
    pub instance_id: Option<String>,
    /// Where other instances reach this one (default: the bound address).
    pub advertised_url: Option<String>,
    /// Besides the data dir's `state/`, where pipeline files may keep their state.
    pub state_roots: Vec<PathBuf>,
    /// The token reads must carry, if any (`--read-token-file`, else `$WEIR_READ_TOKEN`).
    pub read_token_file: Option<PathBuf>,
    /// The secret the application's instances share (`--claim-secret-file`, else
    /// `$WEIR_CLAIM_SECRET`, else the admin token).
    pub claim_secret_file: Option<PathBuf>,
    /// Most forwarded queries and range scans at once.
    pub max_heavy_queries: std::num::NonZeroUsize,
}

/// The shortest token weir takes, from any source.
const MIN_TOKEN: usize = 16;

/// A token given explicitly: in `file` (its flag is `flag`), else in `$env`. Either way it
/// must be at least [`MIN_TOKEN`] characters: a short token is guessed.
fn given_token(file: Option<&PathBuf>, flag: &str, env: &str) -> anyhow::Result<Option<String>> {
    let (token, from) = match file {
        Some(file) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {flag} {}", file.display()))?;
            (text.trim().to_owned(), format!("{flag} {}", file.display()))
        }
        None => match std::env::var(env) {
            Ok(t) if !t.trim().is_empty() => (t.trim().to_owned(), format!("${env}")),
            _ => return Ok(None),
        },
    };
    if token.chars().count() < MIN_TOKEN {
        bail!("the token in {from} is shorter than {MIN_TOKEN} characters");
    }
    Ok(Some(token))
}

/// Where other instances reach this one: `--advertised-url`, else the bound address, which must
/// then be one a peer can reach (not `0.0.0.0` or `::`, which a peer would take for itself).
fn advertised(given: Option<&str>, address: SocketAddr) -> anyhow::Result<String> {
    if let Some(url) = given {
        let host = url.strip_prefix("http://").map(|rest| rest.split(['/', '?']).next().unwrap_or(rest));
        match host.and_then(|h| h.parse::<SocketAddr>().ok().map(|a| a.ip().is_unspecified()).or(Some(h.is_empty()))) {
            None => bail!("--advertised-url `{url}` must be http://HOST:PORT"),
            Some(true) => bail!("--advertised-url `{url}` names no host a peer can reach"),
            Some(false) => return Ok(url.trim_end_matches('/').to_owned()),
        }
    }
    if address.ip().is_unspecified() {
        bail!(
            "weir listens on {address}, which names no address a peer can reach: \
             give the URL other instances reach this one at with --advertised-url http://HOST:{}",
            address.port()
        );
    }
    Ok(format!("http://{address}"))
}

/// Stops on SIGINT or SIGTERM.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

/// A thread that answers requests asks for short turns on the CPU ([`crate::sched`]): a query
/// arriving while the pipelines keep every core busy then waits less for its thread to run.
fn answering_thread() {
    if let Err(e) = crate::sched::short_turns(ANSWER_SLICE) {
        tracing::debug!("the HTTP thread keeps the default slice: {e}");
    }
}

/// The slice the HTTP threads ask for: the shortest the kernel grants.
const ANSWER_SLICE: Duration = Duration::from_micros(100);

/// The HTTP side runs on one thread of its own, with a single-threaded runtime: queries then
/// take at most one core from the pipelines beside them (a query costs about the same CPU on
/// one thread as on two workers; the benchmark's pipeline kept more of its speed under
/// saturating queries). Whatever blocks longer than a store read (deploys, range scans,
/// forwarded queries) goes to the runtime's blocking threads.
struct Http {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Http {
    /// Binds `options.listen` (so a bad address fails at once) and serves on a thread of its own.
    fn start(supervisor: Supervisor, options: admin::Options) -> anyhow::Result<(SocketAddr, Self)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_start(answering_thread)
            .build()
            .context("cannot start the HTTP runtime")?;
        let (address, server) = rt.block_on(admin::bind(supervisor, options))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weir-http".into())
            .spawn(move || {
                answering_thread();
                let result = rt.block_on(async move {
                    tokio::select! {
                        result = server => result,
                        // Only a sent stop stops it: a dropped `Http` leaves it serving.
                        Ok(()) = stopped => Ok(()),
                    }
                });
                if let Err(e) = result {
                    tracing::error!("the HTTP server stopped: {e}");
                }
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .context("cannot start the HTTP thread")?;
        Ok((address, Self { stop, thread }))
    }

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

pub fn run(serve: Serve, out: &mut dyn Write) -> anyhow::Result<()> {
    let explicit = given_token(serve.token_file.as_ref(), "--token-file", "WEIR_ADMIN_TOKEN")?;
    let read_token = given_token(serve.read_token_file.as_ref(), "--read-token-file", "WEIR_READ_TOKEN")?;
    let claim_secret = given_token(serve.claim_secret_file.as_ref(), "--claim-secret-file", "WEIR_CLAIM_SECRET")?;
    if !serve.listen.ip().is_loopback() && explicit.is_none() {
        bail!(
            "weir listens beyond loopback ({}) only with an explicitly given token (--token-file or WEIR_ADMIN_TOKEN)",
            serve.listen
        );
    }
    if let Some(id) = serve.instance_id.as_deref().filter(|id| !crate::config::id_ok(id)) {
        bail!("--instance-id `{id}` {}", crate::config::ID_RULE);
    }
    if serve.listen.ip().is_unspecified() {
        advertised(serve.advertised_url.as_deref(), serve.listen)?;
    }
    let data = DataDir::open(&serve.data_dir)?.with_state_roots(&serve.state_roots)?;
    let token = match explicit {
        Some(t) => t,
        None => data.token()?,
    };
    let claim_secret = claim_secret.unwrap_or_else(|| token.clone());
    let engine = Engine::new(EngineOptions {
        // The most any one pipeline's instances may use; each pipeline sets its own limit.
        memory_limit: 4 << 30,
        fuel: serve.fuel.then_some(u64::MAX),
        cache_dir: serve.cache_dir.clone().or_else(ComponentCache::default_dir),
        max_instances: serve.max_instances,
        ..EngineOptions::default()
    })?;
    let supervisor = Supervisor::new(engine, Metrics::new(), Some(data));
    let stop = stop_on_signals()?;
    let options = admin::Options {
        listen: serve.listen,
        token: Some(token),
        read_token,
        max_upload: serve.max_upload_mib << 20,
        max_heavy_queries: serve.max_heavy_queries.get(),
        ..admin::Options::default()
    };
    let (address, http) = Http::start(supervisor.clone(), options)?;
    let advertise = advertised(serve.advertised_url.as_deref(), address)?;
    let advertise = Advertise { url: advertise, key: ClaimKey::new(claim_secret.as_bytes()) };
    supervisor.set_site(Site { instance_id: serve.instance_id.clone(), advertise: Some(advertise) });
    let restored = supervisor.restore_all()?;
    writeln!(
        out,
        "weir serve: listening on http://{address} ({restored} pipelines from {})",
        serve.data_dir.display()
    )?;
    out.flush()?;
    tracing::info!(%address, restored, "serving");
    while !stop.load(Ordering::SeqCst) {
        if http.is_finished() {
            supervisor.shutdown();
            bail!("the HTTP server stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping: every pipeline commits and leaves its group");
    supervisor.shutdown();
    http.stop();
    Ok(())
}

/// Serves the read-only routes of `supervisor` on `listen` from a background thread, for
/// `weir run --admin`. Returns the bound address.
pub fn admin_beside(supervisor: Supervisor, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let options = admin::Options { listen, token: None, max_upload: 1 << 20, ..admin::Options::default() };
    let (address, http) = Http::start(supervisor, options)?;
    // Detached: it serves as long as the process runs.
    drop(http);
    Ok(address)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_never_advertised_to_peers() {
        let any: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        let err = advertised(None, any).unwrap_err().to_string();
        assert!(err.contains("--advertised-url"), "{err}");
        assert!(advertised(Some("http://0.0.0.0:8787"), any).is_err());
        assert!(advertised(Some("http://[::]:8787"), any).is_err());
        assert!(advertised(Some("ftp://10.0.0.5"), any).is_err());
        assert_eq!(advertised(Some("http://10.0.0.5:8787/"), any).unwrap(), "http://10.0.0.5:8787");
        assert_eq!(advertised(None, "127.0.0.1:9".parse().unwrap()).unwrap(), "http://127.0.0.1:9");
    }

    #[test]
    fn a_token_shorter_than_sixteen_characters_is_refused_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "short\n").unwrap();
        let err = given_token(Some(&file), "--token-file", "WEIR_TEST_UNSET_TOKEN").unwrap_err().to_string();
        assert!(err.contains("shorter than 16"), "{err}");
        std::fs::write(&file, "0123456789abcdef\n").unwrap();
        assert_eq!(given_token(Some(&file), "--token-file", "X").unwrap().as_deref(), Some("0123456789abcdef"));
        // The environment is read only through a variable no other test sets.
        std::env::set_var("WEIR_TEST_SHORT_TOKEN", "x");
        let err = given_token(None, "--token-file", "WEIR_TEST_SHORT_TOKEN").unwrap_err().to_string();
        assert!(err.contains("$WEIR_TEST_SHORT_TOKEN"), "{err}");
        assert_eq!(given_token(None, "--token-file", "WEIR_TEST_UNSET_TOKEN").unwrap(), None);
    }
}
