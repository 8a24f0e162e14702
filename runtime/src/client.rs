//! The CLI's side of the HTTP API: `weir deploy | ps | status | logs | pause | resume |
//! rollback | undeploy` against a `weir serve`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use serde::de::DeserializeOwned;

use crate::api::{
    ApiError, DeployRequest, Deployed, GuestLogPage, ModuleUpload, Paused, Phase, Pipelines, Replayed, Status,
    Undeployed,
};
use crate::config::PipelineConfig;
use crate::guest_log::{Level, LogLine};

/// Where the server is, and the token to send.
pub struct Client {
    server: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The data dir `weir serve` uses unless told: `$WEIR_DATA_DIR`, else `~/.local/share/weir`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/weir")
}

/// The admin token: `--token-file`, else `$WEIR_ADMIN_TOKEN`, else the default data dir's.
pub fn token(token_file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Some(file) = token_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read the token file {}", file.display()))?;
        return Ok(Some(text.trim().to_owned()));
    }
    if let Ok(token) = std::env::var("WEIR_ADMIN_TOKEN") {
        return Ok(Some(token.trim().to_owned()));
    }
    Ok(std::fs::read_to_string(default_data_dir().join("admin.token")).ok().map(|t| t.trim().to_owned()))
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build();
        Self { server: server.trim_end_matches('/').to_owned(), token, agent: config.into() }
    }

    /// Sends a request and reads the answer of a 2xx as `T`, or says the server's error.
    fn call<T: DeserializeOwned>(&self, method: &str, path: &str, body: Option<&DeployRequest>) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.server);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match (method, body) {
            // The admin token reads too, where reads need a token.
            ("GET", _) => with_auth(self.agent.get(&url), &auth).call(),
            ("DELETE", _) => with_auth(self.agent.delete(&url), &auth).call(),
            ("PUT", Some(b)) => with_auth(self.agent.put(&url), &auth).send_json(b),
            _ => with_auth(self.agent.post(&url), &auth).send_empty(),
        };
        let mut response = sent.map_err(|e| anyhow!("cannot reach weir at {}: {e}", self.server))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<ApiError>(&text).map_or(text, |e| e.error);
            bail!("{method} {path}: {status}: {message}")
        }
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{method} {path}: the answer is not what weir answers ({e}): {text}"))
    }

    /// The newest `limit` lines pipeline `name`'s guests logged at `level` or worse.
    pub fn logs(&self, name: &str, level: Level, limit: usize) -> anyhow::Result<GuestLogPage> {
        self.call("GET", &format!("/v1/pipelines/{name}/logs?level={}&limit={limit}", level.as_str()), None)
    }

    /// Prints the newest `limit` lines, then each line as it is logged, until the server ends
    /// the stream (the connection is not timed out: following is meant to last).
    pub fn follow_logs(&self, name: &str, level: Level, limit: usize, out: &mut dyn Write) -> anyhow::Result<()> {
        let path = format!("/v1/pipelines/{name}/logs?level={}&limit={limit}&follow=true", level.as_str());
        let url = format!("{}{path}", self.server);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut response = with_auth(agent.get(&url), &auth)
            .call()
            .map_err(|e| anyhow!("cannot reach weir at {}: {e}", self.server))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let message = serde_json::from_str::<ApiError>(&text).map_or(text, |e| e.error);
            bail!("GET {path}: {status}: {message}")
        }
        let reader = std::io::BufReader::new(response.body_mut().as_reader());
        for line in std::io::BufRead::lines(reader) {
            let line = line.with_context(|| format!("reading the log stream of `{name}`"))?;
            let Some(data) = line.strip_prefix("data: ") else { continue };
            let logged: LogLine =
                serde_json::from_str(data).map_err(|e| anyhow!("a log event weir would not send ({e}): {data}"))?;
            writeln!(out, "{}", show_log_line(&logged))?;
            out.flush()?;
        }
        Ok(())
    }

    pub fn status(&self, name: &str) -> anyhow::Result<Status> {
        self.call("GET", &format!("/v1/pipelines/{name}"), None)
    }

    pub fn list(&self) -> anyhow::Result<Vec<Status>> {
        Ok(self.call::<Pipelines>("GET", "/v1/pipelines", None)?.pipelines)
    }

    pub fn pause(&self, name: &str, paused: bool) -> anyhow::Result<Paused> {
        let action = if paused { "pause" } else { "resume" };
        self.call("POST", &format!("/v1/pipelines/{name}/{action}"), None)
    }

    pub fn rollback(&self, name: &str) -> anyhow::Result<Deployed> {
        self.call("POST", &format!("/v1/pipelines/{name}/rollback"), None)
    }

    pub fn replay(&self, name: &str, from: Option<i64>, until: Option<i64>) -> anyhow::Result<Replayed> {
        let mut query = Vec::new();
        query.extend(from.map(|f| format!("from={f}")));
        query.extend(until.map(|u| format!("until={u}")));
        self.call("POST", &format!("/v1/pipelines/{name}/dlq/replay?{}", query.join("&")), None)
    }

    pub fn undeploy(&self, name: &str, purge: bool) -> anyhow::Result<Undeployed> {
        self.call("DELETE", &format!("/v1/pipelines/{name}?purge={purge}"), None)
    }

    /// Uploads a pipeline file and the module it names; returns what the server did.
    pub fn deploy(&self, pipeline: &Path) -> anyhow::Result<Deployed> {
        let config = PipelineConfig::load(pipeline)?;
        let text = std::fs::read_to_string(pipeline)?;
        let upload = |path: &Path| -> anyhow::Result<ModuleUpload> {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read the module {}", path.display()))?;
            let name = path.file_name().map_or("module.wasm".into(), |n| n.to_string_lossy()).into_owned();
            Ok(ModuleUpload { name, base64: base64::engine::general_purpose::STANDARD.encode(&bytes) })
        };
        let mut body = DeployRequest { pipeline: text, module: None, stages: Default::default() };
        match &config.module {
            Some(module) => body.module = Some(upload(&module.path)?),
            None => {
                for (stage, s) in &config.stages {
                    body.stages.insert(stage.clone(), upload(&s.module.path)?);
                }
            }
        }
        self.call("PUT", &format!("/v1/pipelines/{}", config.application_id), Some(&body))
    }

    /// Waits until pipeline `name` runs `version` (or is paused with it), or fails.
    /// On a terminal, says what it waits for (a restore, with its progress) on one line.
    pub fn wait_running(&self, name: &str, version: u32, timeout: Duration) -> anyhow::Result<Status> {
        let started = Instant::now();
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut shown = false;
        loop {
            let s = self.status(name)?;
            let waiting = match s.snapshot.status {
                Phase::Running | Phase::Paused if s.snapshot.version == Some(version) => {
                    if shown {
                        eprint!("\r\x1b[2K");
                    }
                    return Ok(s);
                }
                Phase::Failed => {
                    if shown {
                        eprintln!();
                    }
                    bail!("pipeline {name} failed: {}", s.snapshot.error.as_deref().unwrap_or("(no error)"))
                }
                Phase::Restoring => match &s.snapshot.restore {
                    Some(r) if r.total > 0 => format!(
                        "restoring partitions {:?}: {} of {} records ({}%)",
                        r.partitions,
                        r.restored,
                        r.total,
                        r.restored * 100 / r.total
                    ),
                    _ => "restoring state".to_owned(),
                },
                phase => format!("{} (version {version} deploying)", phase.as_str()),
            };
            if terminal {
                eprint!("\r\x1b[2K{name}: {waiting}, {} s", started.elapsed().as_secs());
                let _ = std::io::stderr().flush();
                shown = true;
            }
            if started.elapsed() > timeout {
                let now = serde_json::to_string(&s).unwrap_or_default();
                bail!("pipeline {name} is not running version {version} after {} s: {now}", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn with_auth<B>(request: ureq::RequestBuilder<B>, auth: &Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => request.header("Authorization", a),
        None => request,
    }
}

/// A guest's log line as `weir logs` prints it: when (UTC), level, module, where, message.
pub fn show_log_line(line: &LogLine) -> String {
    let at = match line.offsets {
        Some((first, last)) if first == last => format!("{}[{}]@{first}", line.topic, line.partition),
        Some((first, last)) => format!("{}[{}]@{first}-{last}", line.topic, line.partition),
        None => format!("{}[{}]", line.topic, line.partition),
    };
    let source = if line.source == "log" { String::new() } else { format!("{}: ", line.source) };
    format!(
        "{} {:<5} {} {at} {source}{}",
        utc(line.at_ms),
        line.level.as_str().to_uppercase(),
        line.module,
        line.message
    )
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn utc(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// `weir ps`: one line a pipeline.
pub fn print_table(pipelines: &[Status], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<28} {:<10} {:>7} {:>10} {:>10} {:>10} {:>10}",
        "NAME", "STATUS", "VERSION", "PARTITIONS", "IN/S", "OUT/S", "LAG"
    )?;
    let or_dash = |n: Option<String>| n.unwrap_or_else(|| "-".to_owned());
    for p in pipelines {
        let s = &p.snapshot;
        writeln!(
            out,
            "{:<28} {:<10} {:>7} {:>10} {:>10.0} {:>10.0} {:>10}",
            p.name,
            s.status.as_str(),
            or_dash(s.version.map(|v| v.to_string())),
            s.partitions.len(),
            s.rate_in,
            s.rate_out,
            or_dash(p.lag.map(|l| l.to_string()))
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
