//! Helpers for tests of a real `weir serve` process over real HTTP: start it on a free
//! loopback port, call its API, wait on its status, SIGKILL or SIGTERM it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_runtime::api::{Deployed, Paused, Status};

/// A broker, topics, a data dir, and `weir serve` processes on them.
pub struct Sidecar {
    pub bootstrap: String,
    pub dir: tempfile::TempDir,
    pub cache: PathBuf,
    bin: PathBuf,
}

impl Sidecar {
    /// `bin` is the `weir-e2e` binary (`env!("CARGO_BIN_EXE_weir-e2e")` in a test).
    pub fn new(bin: &Path) -> Self {
        Self::on(bin, crate::kafka::bootstrap())
    }

    /// On the broker at `bootstrap` rather than the shared one.
    pub fn on(bin: &Path, bootstrap: String) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot make a temporary directory: {e}"));
        // One compiled-component cache for every test.
        let cache = std::env::temp_dir().join("weir-serve-tests-cache");
        Self { bootstrap, dir, cache, bin: bin.to_path_buf() }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `weir serve` on the data dir.
    pub fn serve(&self, args: &[&str]) -> Server {
        Server::start(&self.bin, &self.data_dir(), &self.cache, args)
    }

    /// A `weir serve` on a data dir of its own, `name`.
    pub fn serve_in(&self, name: &str, args: &[&str]) -> Server {
        Server::start(&self.bin, &self.dir.path().join(name), &self.cache, args)
    }

    /// Runs `weir serve` on `data_dir` with `args` and `env`, which must refuse to start: returns
    /// what it said on stderr. Panics if it is still running after a minute.
    pub fn serve_refused(&self, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
        let (mut child, log) = spawn(&self.bin, data_dir, &self.cache, args, env, Stdio::null());
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "weir serve {args:?} started where it should have refused:\n{}",
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
            }
        };
        assert!(!status.success(), "weir serve {args:?} exited with success");
        // The collecting thread reads to the end of stderr, which the exit closed.
        std::thread::sleep(Duration::from_millis(100));
        log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Topics `in` and `out` with `partitions` partitions.
    pub fn topics(&self, partitions: i32) -> (String, String) {
        let (input, output) = (crate::kafka::unique("in"), crate::kafka::unique("out"));
        crate::kafka::create_topic(&self.bootstrap, &input, partitions);
        crate::kafka::create_topic(&self.bootstrap, &output, partitions);
        (input, output)
    }

    /// A pipeline file `app` running guest `module` from `input` to `output`.
    pub fn pipeline(&self, app: &str, module: &str, input: &str, output: &str, extra: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("{app}-{module}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        crate::kafka::pipeline_file(&dir, app, &self.bootstrap, input, output, &crate::guest(module), extra)
    }
}

/// The claim secret of every `weir serve` the tests start.
pub const CLAIM_SECRET: &str = "weir-tests-claim-secret";

/// A `weir serve` child process.
pub struct Server {
    child: Child,
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// An HTTP client that hands back every status instead of failing on 4xx and 5xx.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn collect(stream: impl std::io::Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut log) = sink.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
}

/// `<bin> serve` on `data_dir` with `args` and `env` (after the tests' own: info logs, no admin
/// token from the environment, the fleet's claim secret), its stderr collected.
fn spawn(
    bin: &Path,
    data_dir: &Path,
    cache_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdout: Stdio,
) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(bin)
        .arg("serve")
        .args(["--data-dir", &data_dir.to_string_lossy(), "--cache-dir", &cache_dir.to_string_lossy()])
        .args(args)
        .env("WEIR_LOG", "info,rdkafka=warn")
        .env_remove("WEIR_ADMIN_TOKEN")
        // Every instance a test starts is of one fleet: they share the claim secret.
        .env("WEIR_CLAIM_SECRET", CLAIM_SECRET)
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start weir serve: {e}"));
    let log = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        collect(stderr, log.clone());
    }
    (child, log)
}

impl Server {
    /// Starts `<bin> serve` on a free port with `data_dir`, and waits until it listens.
    pub fn start(bin: &Path, data_dir: &Path, cache_dir: &Path, args: &[&str]) -> Self {
        let args = [&["--listen", "127.0.0.1:0"], args].concat();
        let (mut child, log) = spawn(bin, data_dir, cache_dir, &args, &[], Stdio::piped());
        let mut stdout = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")));
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap_or_else(|e| panic!("reading weir serve's stdout: {e}"));
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "weir serve did not say where it listens: {first:?}\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                )
            })
            .to_owned();
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap_or_else(|e| panic!("weir serve wrote no admin.token: {e}"))
            .trim()
            .to_owned();
        Self { child, url, token, data_dir: data_dir.to_path_buf(), log, agent: agent() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// `GET path`: the status, the JSON body, and the instance that answered (`weir-instance`).
    pub fn query(&self, path: &str) -> (u16, Value, Option<String>) {
        let mut r = self.agent.get(format!("{}{path}", self.url)).call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let by = r.headers().get("weir-instance").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(Value::String(text)), by)
    }

    /// `GET path`: the status and the JSON body (a string for a body that is not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut r = self.agent.get(format!("{}{path}", self.url)).call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The raw text of `GET path`.
    pub fn get_text(&self, path: &str) -> String {
        let mut r = self.agent.get(format!("{}{path}", self.url)).call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.body_mut().read_to_string().unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A mutating request with `token` (none: no Authorization header).
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let result = match method {
            "PUT" => {
                let mut req = self.agent.put(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.send_json(body.cloned().unwrap_or(Value::Null))
            }
            "DELETE" => {
                let mut req = self.agent.delete(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            _ => {
                let mut req = self.agent.post(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.send_json(body.cloned().unwrap_or(Value::Null))
            }
        };
        let mut r = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `POST /v1/pipelines/{name}/{action}` with the token; panics unless it succeeded with the
    /// API's answer to that action.
    pub fn act(&self, name: &str, action: &str) -> Value {
        let (status, body) = self.send("POST", &format!("/v1/pipelines/{name}/{action}"), None, Some(&self.token));
        assert_eq!(status, 200, "{action} {name}: {body}");
        let typed = match action {
            "rollback" => serde_json::from_value::<Deployed>(body.clone()).map(drop),
            _ => serde_json::from_value::<Paused>(body.clone()).map(drop),
        };
        if let Err(e) = typed {
            panic!("the answer to {action} {name} does not read as the API's type ({e}): {body}");
        }
        body
    }

    /// `weir <command> ... --server URL --token-file F`, in this process, through the CLI.
    pub fn cli(&self, args: &[&str]) -> crate::Run {
        let token = self.token_file();
        let mut all: Vec<&str> = args.to_vec();
        let token = token.to_string_lossy().into_owned();
        all.extend_from_slice(&["--server", &self.url, "--token-file", &token]);
        crate::weir(&all, &self.data_dir)
    }

    /// `weir deploy PIPELINE` through the CLI; panics with its error unless it succeeded.
    pub fn deploy(&self, pipeline: &Path) -> String {
        let run = self.cli(&["deploy", &pipeline.to_string_lossy()]);
        assert!(run.ok, "weir deploy {} failed: {:?}\n{}", pipeline.display(), run.error, self.log());
        run.stdout
    }

    /// A pipeline's status, as JSON; it must also read as the API's own [`Status`] type (the
    /// one the server writes and the CLI reads), so every status a test looks at checks the
    /// contract too.
    pub fn status(&self, name: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/pipelines/{name}"));
        assert_eq!(status, 200, "status of {name}: {body}");
        if let Err(e) = serde_json::from_value::<Status>(body.clone()) {
            panic!("the status of {name} does not read as api::Status ({e}): {body}");
        }
        body
    }

    /// A pipeline's status, typed.
    pub fn typed_status(&self, name: &str) -> Status {
        serde_json::from_value(self.status(name)).unwrap_or_else(|e| panic!("status of {name}: {e}"))
    }

    /// Waits until `name`'s status satisfies `ok`, or panics with it after `timeout`.
    pub fn wait_for(&self, name: &str, what: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let s = self.status(name);
            if ok(&s) {
                return s;
            }
            assert!(started.elapsed() < timeout, "{name} not {what} after {timeout:?}: {s}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `name` runs (or is paused, as `phase` says) with its state restored.
    pub fn wait_phase(&self, name: &str, phase: &str) -> Value {
        self.wait_for(name, phase, Duration::from_secs(120), |s| {
            s["status"] == phase && s["partitions"].as_array().is_some_and(|p| !p.is_empty())
        })
    }

    /// SIGKILL: no commit, no leaving the group. Returns the log.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }

    /// SIGTERM, and a clean exit; returns the log.
    pub fn stop(mut self) -> String {
        let status = crate::kafka::terminate(&mut self.child);
        std::thread::sleep(Duration::from_millis(200));
        assert!(status.success(), "weir serve did not stop cleanly ({status}):\n{}", self.log());
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
