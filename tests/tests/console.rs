//! The console (`/ui`) in a real headless browser: Debian's chromium driven through its
//! chromedriver (WebDriver) against a real `weir serve` on the real broker. The page loads with
//! no errors; a deployed pipeline appears with a rate that moves while records flow; a key's
//! value appears in the state browser; pause needs the token: a wrong one is refused and
//! changes nothing, the right one pauses. Screenshots of the views go to the cargo target dir
//! (`console-*.png`), for `docs/`.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use weir_tests::kafka::{produce, unique, words, LONG};
use weir_tests::serve::Sidecar;

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

/// A chromedriver of our own, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver (Debian's chromium-driver; scripts/test.sh installs it): {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while weir_tests::serve::agent().get(&format!("{url}/status")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not answer at {url}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let options = json!({
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"],
    });
    caps.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.unwrap()
}

/// Evaluates `script` in the page until it returns something other than null or false.
async fn wait_for(page: &Client, what: &str, script: &str) -> Value {
    let started = Instant::now();
    loop {
        let got = page.execute(script, vec![]).await.unwrap();
        if !(got.is_null() || got == Value::Bool(false)) {
            return got;
        }
        assert!(started.elapsed() < LONG, "{what}: not within {LONG:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn errors(page: &Client) -> Vec<String> {
    let got = page.execute("return window.weirErrors || ['the page did not load errors.js']", vec![]).await.unwrap();
    serde_json::from_value(got).unwrap()
}

/// The cargo target dir, where the screenshots go.
fn screenshots() -> PathBuf {
    // The test binary sits in <target>/<profile>/deps.
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).and_then(Path::parent).unwrap().to_path_buf()
}

#[test]
fn the_console_shows_a_running_pipeline_its_state_and_pauses_it_only_with_the_token() {
    let s = Sidecar::new(Path::new(BIN));
    let server = s.serve(&[]);
    let (input, output) = s.topics(2);
    let app = unique("console");
    server.deploy(&s.pipeline(&app, "word-count", &input, &output, ""));
    let (bootstrap, topic) = (s.bootstrap.clone(), input.clone());
    let feed =
        std::thread::spawn(move || produce(&bootstrap, &topic, &words(0, 30_000), Some(Duration::from_secs(30))));
    let driver = Driver::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let page = browser(&driver).await;
        page.goto(&format!("{}/ui/", server.url)).await.unwrap();
        let row = format!("document.querySelector('#pipelines tr[data-name=\"{app}\"]')");
        wait_for(&page, "the pipeline's row", &format!("return {row} !== null")).await;
        // The rate moves: two different readings of records in per second, both above zero.
        let rate = format!("Number({row}.cells[4].textContent.replace(/,/g, ''))");
        let seen = wait_for(
            &page,
            "the rate to move",
            &format!(
                "window.rates = (window.rates || []).concat([{rate}]); \
                 return new Set(window.rates.filter((x) => x > 0)).size >= 2"
            ),
        )
        .await;
        assert_eq!(seen, Value::Bool(true));
        let status = page.find(Locator::Css(&format!("#pipelines tr[data-name=\"{app}\"] td:nth-child(2)"))).await;
        assert_eq!(status.unwrap().text().await.unwrap(), "running");
        // Twenty seconds of the chart, for the screenshot.
        let points = "return Number(document.getElementById('chart').dataset.points) >= 20";
        wait_for(&page, "twenty seconds of rates", points).await;
        let dir = screenshots();
        std::fs::write(dir.join("console-pipelines.png"), page.screenshot().await.unwrap()).unwrap();

        // The state browser: a word's count, as the query API has it.
        wait_for(&page, "the state browser", "return !document.getElementById('state-browser').hidden").await;
        let word = "w1";
        let (code, truth) = server.get(&format!("/v1/pipelines/{app}/state/{word}"));
        assert_eq!(code, 200, "{truth}");
        page.find(Locator::Id("state-key")).await.unwrap().send_keys(word).await.unwrap();
        page.find(Locator::Css("#state-form button")).await.unwrap().click().await.unwrap();
        let shown = wait_for(
            &page,
            "the key's row",
            "const row = document.querySelector('#state tbody tr'); \
             return row && [row.cells[0].textContent, row.cells[1].textContent]",
        )
        .await;
        assert_eq!(shown[0], word);
        assert!(shown[1].as_str().unwrap().parse::<u64>().unwrap() >= truth["value"].as_u64().unwrap());
        std::fs::write(dir.join("console-state.png"), page.screenshot().await.unwrap()).unwrap();

        // Pause: with no token, then a wrong one (refused, nothing changes), then the right one.
        let pause = page.find(Locator::Css("#actions button[data-action=\"pause\"]")).await.unwrap();
        pause.click().await.unwrap();
        let said = wait_for(&page, "an answer", "return document.getElementById('answer').textContent").await;
        assert!(said.as_str().unwrap().contains("token"), "{said}");
        let token = page.find(Locator::Id("token")).await.unwrap();
        token.send_keys("not-the-token-at-all").await.unwrap();
        page.find(Locator::Css("#token-form button")).await.unwrap().click().await.unwrap();
        pause.click().await.unwrap();
        let refused =
            wait_for(&page, "the refusal", "return document.getElementById('answer').dataset.status || null").await;
        assert_eq!(refused, "401");
        assert_eq!(server.status(&app)["status"], "running", "a wrong token changes nothing");
        token.clear().await.unwrap();
        token.send_keys(&server.token).await.unwrap();
        page.find(Locator::Css("#token-form button")).await.unwrap().click().await.unwrap();
        pause.click().await.unwrap();
        wait_for(
            &page,
            "the page to show it paused",
            "return document.getElementById('detail').dataset.status === 'paused'",
        )
        .await;
        assert_eq!(server.status(&app)["status"], "paused");
        std::fs::write(dir.join("console-paused.png"), page.screenshot().await.unwrap()).unwrap();

        assert_eq!(errors(&page).await, Vec::<String>::new(), "the page logged errors");
        page.close().await.unwrap();
    });
    feed.join().unwrap();
    server.stop();
}
