//! A one-line progress display for the CLI's long waits, on a terminal only.

/// On a terminal, a line that says what runs and for how long, every second, until dropped
/// (`weir build`, whose toolchains' own output is captured; `weir dlq replay`, one request).
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub fn start(what: String) -> Self {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Self { stop: None, thread: None };
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            loop {
                eprint!("\r\x1b[2K{what}: {} s", started.elapsed().as_secs());
                match stopped.recv_timeout(std::time::Duration::from_secs(1)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            eprint!("\r\x1b[2K");
        });
        Self { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
