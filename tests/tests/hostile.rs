//! A real `weir serve`, over real HTTP and the real broker, tried as an attacker or a careless
//! operator would: names that are paths, purges, state dirs and uploads that reach outside,
//! broken records in the data dir, a second process on it, `[kafka]` settings that load code,
//! short tokens, slow clients, and reads behind a token.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use weir_tests::guest;
use weir_tests::kafka::{produce, unique};
use weir_tests::serve::{Server, Sidecar};

const BIN: &str = env!("CARGO_BIN_EXE_weir-e2e");

fn sidecar() -> Sidecar {
    Sidecar::new(Path::new(BIN))
}

/// A deploy body: the pipeline file's text and guest `module`'s bytes.
fn deploy_body(text: &str, module: &str) -> Value {
    let bytes = std::fs::read(guest(module)).unwrap();
    json!({ "pipeline": text, "module": { "name": format!("{module}.wasm"), "base64": base64::engine::general_purpose::STANDARD.encode(bytes) } })
}

/// `PUT /v1/pipelines/{name}` with the token.
fn put(server: &Server, name: &str, body: &Value) -> (u16, Value) {
    server.send("PUT", &format!("/v1/pipelines/{name}"), Some(body), Some(&server.token))
}

fn error_of(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

#[test]
fn a_name_that_is_a_path_is_refused_and_a_purge_cannot_reach_the_data_dir() {
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    for name in ["..", ".", ".hidden", &"n".repeat(300)] {
        let file = s.pipeline(&unique("dots"), "uppercase", &input, &output, "");
        let text = std::fs::read_to_string(&file).unwrap();
        let app = text.lines().next().unwrap().split('"').nth(1).unwrap().to_owned();
        let text = text.replace(&format!("\"{app}\""), &format!("{name:?}"));
        // Percent-encoded, so no client folds `..` away before it is sent.
        let path = name.replace('.', "%2E");
        let (status, answer) = put(&server, &path, &deploy_body(&text, "uppercase"));
        assert_eq!(status, 400, "{name}: {answer}");
        assert!(error_of(&answer).contains("application_id"), "{answer}");
        let (status, _) = server.send("DELETE", &format!("/v1/pipelines/{path}?purge=true"), None, Some(&server.token));
        assert_eq!(status, 404);
    }
    assert!(server.token_file().exists(), "the data dir lost its token");
    assert_eq!(server.get("/healthz").0, 200);
    server.stop();
}

#[test]
fn a_purge_deletes_only_the_stores_weir_made_and_state_stays_where_the_operator_allows() {
    let s = sidecar();
    let root = s.dir.path().join("team-state");
    std::fs::create_dir_all(&root).unwrap();
    let server = s.serve(&["--state-root", &root.to_string_lossy()]);
    let (input, output) = s.topics(2);

    // Outside the data dir and every allowed root: refused, naming the flag that allows it.
    let app = unique("elsewhere");
    let outside = s.dir.path().join("not-allowed");
    let file =
        s.pipeline(&app, "word-count", &input, &output, &format!("state_dir = {:?}", outside.display().to_string()));
    let (status, answer) = put(&server, &app, &deploy_body(&std::fs::read_to_string(file).unwrap(), "word_count"));
    assert_eq!(status, 400, "{answer}");
    assert!(error_of(&answer).contains("--state-root"), "{answer}");
    assert!(!outside.exists());

    let app = unique("purged");
    let file =
        s.pipeline(&app, "word-count", &input, &output, &format!("state_dir = {:?}", root.display().to_string()));
    server.deploy(&file);
    produce(&s.bootstrap, &input, &[("k".into(), "the river".into(), Vec::new())], None);
    server.wait_phase(&app, "running");
    let stores = root.join(&app).join("state");
    let started = Instant::now();
    while !stores.join("partition-0").exists() || !stores.join("partition-1").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no stores under {}", stores.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    // What weir never wrote, beside and among its stores.
    std::fs::write(root.join(&app).join("notes.txt"), "mine").unwrap();
    std::fs::create_dir_all(stores.join("partition-9")).unwrap();
    std::fs::write(stores.join("partition-9").join("data"), "mine").unwrap();

    let (status, answer) = server.send("DELETE", &format!("/v1/pipelines/{app}?purge=true"), None, Some(&server.token));
    assert_eq!(status, 200, "{answer}");
    assert!(!stores.join("partition-0").exists() && !stores.join("partition-1").exists(), "the stores stayed");
    assert_eq!(std::fs::read_to_string(root.join(&app).join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(stores.join("partition-9").join("data")).unwrap(), "mine");
    server.stop();
}

#[test]
fn an_upload_that_is_not_a_component_is_refused_and_nothing_of_it_is_stored() {
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let app = unique("junk");
    let text = std::fs::read_to_string(s.pipeline(&app, "uppercase", &input, &output, "")).unwrap();
    let junk = json!({ "pipeline": text, "module": { "name": "junk.wasm", "base64": base64::engine::general_purpose::STANDARD.encode(b"\0asm not really") } });
    let (status, answer) = put(&server, &app, &junk);
    assert_eq!(status, 400, "{answer}");
    let stored: Vec<_> =
        std::fs::read_dir(server.data_dir.join("modules")).unwrap().flatten().map(|e| e.path()).collect();
    assert!(stored.is_empty(), "a refused upload was kept: {stored:?}");
    // The pipeline files weir keeps are its owner's alone (a `[kafka]` table can hold passwords).
    server.deploy(&s.pipeline(&app, "uppercase", &input, &output, ""));
    use std::os::unix::fs::PermissionsExt as _;
    let mode =
        std::fs::metadata(server.data_dir.join("pipelines").join(format!("{app}.json"))).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    server.stop();
}

#[test]
fn a_pipeline_record_that_cannot_be_read_fails_alone_and_the_sidecar_starts() {
    let s = sidecar();
    let pipelines = s.data_dir().join("pipelines");
    std::fs::create_dir_all(&pipelines).unwrap();
    std::fs::write(pipelines.join("broken.json"), "{ this is not json").unwrap();
    let server = s.serve(&[]);
    assert_eq!(server.get("/healthz").0, 200);
    let status = server.status("broken");
    assert_eq!(status["status"], "failed", "{status}");
    assert!(status["error"].as_str().unwrap_or_default().contains("broken.json"), "{status}");
    // It can be removed, and the rest of the sidecar deploys as usual.
    let (code, answer) = server.send("DELETE", "/v1/pipelines/broken", None, Some(&server.token));
    assert_eq!(code, 200, "{answer}");
    assert!(!pipelines.join("broken.json").exists());
    server.stop();
}

#[test]
fn a_second_weir_serve_on_one_data_dir_exits_naming_the_first_ones_pid() {
    let s = sidecar();
    let first = s.serve(&[]);
    let said = s.serve_refused(&s.data_dir(), &["--listen", "127.0.0.1:0"], &[]);
    assert!(said.contains(&format!("pid {}", first.pid())), "{said}");
    assert_eq!(first.get("/healthz").0, 200, "the first one still serves");
    first.stop();
}

#[test]
fn kafka_settings_that_would_load_native_code_are_refused_naming_the_key() {
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    for key in ["plugin.library.paths", "sasl.kerberos.kinit.cmd", "ssl.engine.location"] {
        let app = unique("plugin");
        let extra = format!("[kafka]\n{key:?} = \"/tmp/evil.so\"");
        let text = std::fs::read_to_string(s.pipeline(&app, "uppercase", &input, &output, &extra)).unwrap();
        let (status, answer) = put(&server, &app, &deploy_body(&text, "uppercase"));
        assert_eq!(status, 400, "{answer}");
        assert!(error_of(&answer).contains(key), "{answer}");
        assert_eq!(server.get(&format!("/v1/pipelines/{app}")).0, 404);
    }
    server.stop();
}

#[test]
fn a_short_token_or_an_address_peers_cannot_reach_is_refused_at_start() {
    let s = sidecar();
    let said = s.serve_refused(&s.data_dir(), &["--listen", "127.0.0.1:0"], &[("WEIR_ADMIN_TOKEN", "x")]);
    assert!(said.contains("shorter than 16"), "{said}");
    let token = s.dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123").unwrap();
    let said =
        s.serve_refused(&s.data_dir(), &["--listen", "0.0.0.0:0", "--token-file", &token.to_string_lossy()], &[]);
    assert!(said.contains("--advertised-url"), "{said}");
}

#[test]
fn clients_that_never_finish_their_headers_neither_delay_healthz_nor_keep_their_connections() {
    let s = sidecar();
    let server = s.serve(&[]);
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(&address).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: weir\r\n").unwrap();
        slow.push(stream);
    }
    // Every one of them holds a connection; a probe is still answered.
    let started = Instant::now();
    assert_eq!(server.get("/healthz").0, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "healthz took {waited:?} beside 1,000 slow clients");
    // The server closes each once its headers are overdue: reading reaches the end.
    for stream in &mut slow {
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a slow client's connection stayed open: {e}"),
        }
    }
    assert_eq!(server.get("/healthz").0, 200);
    server.stop();
}

#[test]
fn with_a_read_token_reads_need_it_and_probes_do_not() {
    let s = sidecar();
    let token = s.dir.path().join("read-token");
    std::fs::write(&token, "reader-0123456789abcdef").unwrap();
    let server = s.serve(&["--read-token-file", &token.to_string_lossy()]);
    assert_eq!(server.get("/v1/pipelines").0, 401);
    assert_eq!(server.get("/metrics").0, 401);
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.get("/readyz").0, 200);
    let agent = weir_tests::serve::agent();
    for bearer in ["reader-0123456789abcdef", server.token.as_str()] {
        let r = agent
            .get(format!("{}/v1/pipelines", server.url))
            .header("Authorization", &format!("Bearer {bearer}"))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    server.stop();
}

#[test]
fn a_forged_claim_on_the_membership_topic_redirects_no_query() {
    use weir_runtime::query::claims::ClaimKey;
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(2);
    let app = unique("forged");
    server.deploy(&s.pipeline(&app, "word-count", &input, &output, ""));
    let words: Vec<_> = (0..40).map(|i| (format!("k{i}"), format!("word{i}"), Vec::new())).collect();
    produce(&s.bootstrap, &input, &words, None);
    server.wait_phase(&app, "running");

    // The forger's listener: it must never be reached.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let forger = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let topic = format!("{app}-instances");
    let claim = |instance: &str, url: &str, partitions: &[i32]| {
        json!({ "instance": instance, "url": url, "partitions": partitions, "generation": 1_000_000,
                "updated_ms": 4_000_000_000_000u64 })
        .to_string()
    };
    // Unsigned, and signed with a guess: both ignored.
    let forged = claim("forger", &forger, &[0, 1]);
    let guessed = claim("guesser", &forger, &[0, 1]);
    let wrong = ClaimKey::new(b"not-the-secret").sign(&[topic.as_bytes(), b"guesser", guessed.as_bytes()]);
    produce(&s.bootstrap, &topic, &[("forger".into(), forged, Vec::new())], None);
    produce(&s.bootstrap, &topic, &[("guesser".into(), guessed, vec![("weir-mac".into(), wrong)])], None);
    // Then a claim signed with the fleet's secret: once it shows, the ones before it were read.
    let witness = claim("witness", "http://127.0.0.1:9", &[]);
    let mac = ClaimKey::new(weir_tests::serve::CLAIM_SECRET.as_bytes()).sign(&[
        topic.as_bytes(),
        b"witness",
        witness.as_bytes(),
    ]);
    produce(&s.bootstrap, &topic, &[("witness".into(), witness, vec![("weir-mac".into(), mac)])], None);
    let path = format!("/v1/pipelines/{app}/instances");
    let started = Instant::now();
    let members = loop {
        let (_, map, _) = server.query(&path);
        let members = map["members"].as_array().cloned().unwrap_or_default();
        if members.iter().any(|m| m["instance"] == "witness") {
            break members;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the signed claim never showed: {map}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !members.iter().any(|m| m["instance"] == "forger" || m["instance"] == "guesser"),
        "a forged claim was believed: {members:?}"
    );
    for i in 0..80 {
        let (status, body, _) = server.query(&format!("/v1/pipelines/{app}/state/word{}", i % 40));
        assert!(status == 200 || status == 404 || status == 503, "{status}: {body}");
    }
    assert!(listener.accept().is_err(), "a query was forwarded to the forger's listener");
    // Nor does a query that claims to be forwarded, without the proof, skip the checks.
    let r = weir_tests::serve::agent()
        .get(format!("{}/v1/pipelines/{app}/state/word1", server.url))
        .header("weir-forwarded", "forger")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    server.stop();
}

#[test]
fn a_producer_cannot_choose_where_its_dead_letter_is_replayed_to() {
    use weir_tests::kafka::{create_topic, end_offsets, read_committed, LONG};
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let victim = unique("victim");
    create_topic(&s.bootstrap, &victim, 1);
    let app = unique("dlq-forge");
    let extra = "[errors]\non_guest_error = \"dead-letter\"";
    server.deploy(&s.pipeline(&app, "misbehave", &input, &output, extra));
    // A poisoned record that names another topic as its source, as weir's headers would.
    let forged =
        vec![("weir.source.topic".to_owned(), victim.clone()), ("weir.source.partition".to_owned(), "0".into())];
    produce(&s.bootstrap, &input, &[("bad".into(), "reject".into(), forged)], None);
    let dlq = format!("{app}-dlq");
    let dead = read_committed(&s.bootstrap, &dlq, 1, Duration::from_secs(2), LONG);
    let header = |name: &str| dead[0].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("weir.source.topic"), Some(input.clone()), "{:?}", dead[0]);
    assert_eq!(header("weir.original.source.topic"), Some(victim.clone()), "the record's own header is kept, renamed");
    // And a dead letter written straight to the dead-letter topic by someone else.
    let straight = vec![("weir.source.topic".to_owned(), victim.clone())];
    produce(&s.bootstrap, &dlq, &[("x".into(), "planted".into(), straight)], None);

    let (status, answer) = server.send("POST", &format!("/v1/pipelines/{app}/dlq/replay"), None, Some(&server.token));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["replayed"], 1, "only the record from the pipeline's own input: {answer}");
    assert_eq!(end_offsets(&s.bootstrap, &victim, 1), vec![0], "a dead letter was replayed to another topic");
    assert_eq!(end_offsets(&s.bootstrap, &input, 1), vec![2], "the real one went back to its input");
    server.stop();
}

#[test]
fn a_changelogs_replication_factor_is_asked_of_the_broker() {
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let app = unique("replicated");
    // The test broker is one broker: a changelog of three replicas cannot be made, and says so.
    let extra = "[changelog]\nreplication_factor = 3";
    let _ = server.cli(&["deploy", &s.pipeline(&app, "word-count", &input, &output, extra).to_string_lossy()]);
    let status = server.wait_for(&app, "failed", Duration::from_secs(120), |s| s["status"] == "failed");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("changelog") && error.to_lowercase().contains("replication"), "{error}");
    server.stop();
}

#[test]
fn a_pipeline_takes_only_its_share_of_the_instance_slots() {
    let s = sidecar();
    let server = s.serve(&["--max-instances", "8"]);
    let (input, output) = s.topics(4);
    let first = unique("share-a");
    server.deploy(&s.pipeline(&first, "uppercase", &input, &output, "max_instances = 10"));
    server.wait_phase(&first, "running");
    // 5 slots held (one per input partition and one for a swap); 5 more do not fit in 8.
    let greedy = unique("share-b");
    let file = s.pipeline(&greedy, "uppercase", &input, &output, "");
    let (status, answer) = put(&server, &greedy, &deploy_body(&std::fs::read_to_string(&file).unwrap(), "uppercase"));
    assert_eq!(status, 409, "{answer}");
    assert!(error_of(&answer).contains("--max-instances") && error_of(&answer).contains("max_instances"), "{answer}");
    assert_eq!(server.get(&format!("/v1/pipelines/{greedy}")).0, 404);
    // Past its share, a pipeline stops with why rather than take the others' slots.
    let small = unique("share-c");
    let file = s.pipeline(&small, "uppercase", &input, &output, "max_instances = 2");
    let _ = server.cli(&["deploy", &file.to_string_lossy()]);
    let status = server.wait_for(&small, "failed", Duration::from_secs(120), |s| s["status"] == "failed");
    assert!(status["error"].as_str().unwrap_or_default().contains("max_instances (2)"), "{status}");
    assert_eq!(server.status(&first)["status"], "running");
    server.stop();
}

#[test]
fn a_module_whose_init_sleeps_is_refused_at_its_deadline_and_holds_up_no_other_pipeline() {
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let other = unique("bystander");
    server.deploy(&s.pipeline(&other, "uppercase", &input, &output, ""));
    server.wait_phase(&other, "running");
    let app = unique("sleeper");
    let file = s.pipeline(&app, "handmade", &input, &output, "");
    let text =
        format!("{}config = {{ init = \"sleep\" }}\ndeadline_ms = 300\n", std::fs::read_to_string(file).unwrap());
    let started = Instant::now();
    let sleeper = std::thread::scope(|scope| {
        let deploy = scope.spawn(|| put(&server, &app, &deploy_body(&text, "handmade")));
        // Meanwhile another pipeline's change goes through.
        assert_eq!(server.act(&other, "pause")["paused"], true);
        deploy.join().unwrap()
    });
    let (status, answer) = sleeper;
    assert_eq!(status, 400, "{answer}");
    assert!(error_of(&answer).contains("deadline of 300 ms"), "{answer}");
    // Asleep in the host, init was out of the deadline's reach: this took ten minutes.
    assert!(started.elapsed() < Duration::from_secs(60), "init slept through its deadline");
    server.stop();
}

#[test]
fn a_state_value_kafka_would_refuse_dead_letters_its_record_and_the_pipeline_goes_on() {
    use weir_tests::kafka::{read_committed, LONG};
    let s = sidecar();
    let server = s.serve(&[]);
    let (input, output) = s.topics(1);
    let app = unique("whale");
    server.deploy(&s.pipeline(&app, "misbehave", &input, &output, "[errors]\non_guest_error = \"dead-letter\""));
    let records: Vec<_> = [("a", "one"), ("whale", "bigstate"), ("b", "two")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string(), Vec::new()))
        .collect();
    produce(&s.bootstrap, &input, &records, None);
    let out = read_committed(&s.bootstrap, &output, 2, Duration::from_secs(2), LONG);
    assert_eq!(out.iter().filter_map(|r| r.value.clone()).collect::<Vec<_>>(), ["one", "two"]);
    let dead = read_committed(&s.bootstrap, &format!("{app}-dlq"), 1, Duration::from_secs(1), LONG);
    let header = |name: &str| dead[0].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("weir.error.kind").as_deref(), Some("state-value"), "{:?}", dead[0]);
    assert!(header("weir.error.message").is_some_and(|m| m.contains("message.max.bytes")), "{:?}", dead[0]);
    assert_eq!(server.status(&app)["status"], "running");
    server.stop();
}
