//! Real `nats-server` processes for tests and benchmarks: a cluster of JetStream servers
//! on free loopback ports, each with its own store directory, started from the Debian
//! binary (`nats-server` in `PATH` or `/usr/sbin`) and killed on drop.
//!
//! [`NatsCluster::start`] writes one config file per node (`server_name`, `jetstream`
//! with its `store_dir`, `cluster` with the routes to the others) and waits until
//! JetStream answers on every node (the meta group has a leader). Nodes can be killed
//! with SIGKILL and started again on the same ports and store ([`NatsCluster::kill`],
//! [`NatsCluster::restart`]). Each server gets `PR_SET_PDEATHSIG`, so a test process that
//! dies does not leave servers behind.
//!
//! [`available_or_required`] is what a test asks first: without the binary it returns
//! early with a note, unless `HERMES_REQUIRE_ALL=1` (CI), which makes it a failure.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `PATH`, then `/usr/sbin` (where Debian installs it).
pub fn binary() -> Option<PathBuf> {
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("nats-server");
            if p.is_file() && runs(&p) {
                return Some(p);
            }
        }
    }
    let p = PathBuf::from("/usr/sbin/nats-server");
    runs(&p).then_some(p)
}

/// `true` when `nats-server` can run. Without it: a note and `false`, or a panic naming
/// the binary when `HERMES_REQUIRE_ALL=1`.
pub fn available_or_required() -> bool {
    if binary().is_some() {
        return true;
    }
    let msg = "nats-server not found (PATH, /usr/sbin); install it with `apt-get install nats-server` (scripts/ci-deps.sh does)";
    if std::env::var("HERMES_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("HERMES_REQUIRE_ALL=1: {msg}");
    }
    eprintln!("note: skipping: {msg}");
    false
}

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}

struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A cluster of JetStream servers on loopback. Killed (SIGKILL) and its directory
/// removed on drop.
pub struct NatsCluster {
    dir: PathBuf,
    bin: PathBuf,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `n` nodes (1 = a single server without a cluster block) under `dir` and
    /// waits until JetStream answers on each. The ports are free when chosen, but another
    /// process may take one before the server binds it: then the whole cluster is started
    /// again on new ports (three tries).
    pub fn start(dir: &Path, n: usize) -> anyhow::Result<NatsCluster> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(dir, n) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    // The failed attempt's servers were killed and its directory removed
                    // when it was dropped.
                    last = Some(e);
                }
            }
        }
        Err(last.expect("three attempts"))
    }

    fn try_start(dir: &Path, n: usize) -> anyhow::Result<NatsCluster> {
        let bin = binary().ok_or_else(|| {
            anyhow::anyhow!("nats-server not found; install it (`apt-get install nats-server`)")
        })?;
        std::fs::create_dir_all(dir)?;
        // Every port bound at once while choosing, so they differ from each other.
        let held: Vec<std::net::TcpListener> = (0..3 * n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<_>>()?;
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<_>>()?;
        drop(held);
        let mut nodes = Vec::new();
        for k in 0..n {
            let name = format!("n{k}");
            nodes.push(Node {
                conf: dir.join(format!("{name}.conf")),
                log: dir.join(format!("{name}.log")),
                name,
                port: ports[3 * k],
                cluster_port: ports[3 * k + 1],
                monitor_port: ports[3 * k + 2],
                child: None,
            });
        }
        let routes: Vec<String> = nodes
            .iter()
            .map(|n| format!("nats-route://127.0.0.1:{}", n.cluster_port))
            .collect();
        for node in &nodes {
            let store = dir.join(&node.name).join("js");
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: hermes-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                    node.cluster_port,
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let conf = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{mon}\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 256MB\n  max_file_store: 2GB\n}}\n{cluster}",
                name = node.name,
                port = node.port,
                mon = node.monitor_port,
                store = store.display(),
            );
            std::fs::write(&node.conf, conf)?;
        }
        let mut c = NatsCluster {
            dir: dir.to_path_buf(),
            bin,
            nodes,
        };
        for k in 0..n {
            c.spawn(k)?;
        }
        c.wait_ready(Duration::from_secs(30))?;
        Ok(c)
    }

    fn spawn(&mut self, k: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[k];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; the
        // closure runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        node.child = Some(cmd.spawn()?);
        Ok(())
    }

    /// Client URLs of every node, comma-separated (what `--nats` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URL of node `k`.
    pub fn url(&self, k: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[k].port)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `false`: a cluster has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node named `name` (`n0`, `n1`, …), as JetStream reports leaders.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `k` with SIGKILL and reaps it.
    pub fn kill(&mut self, k: usize) {
        if let Some(mut c) = self.nodes[k].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `k` again (same ports, same store) and waits until it serves
    /// JetStream.
    pub fn restart(&mut self, k: usize) -> anyhow::Result<()> {
        self.kill(k);
        self.spawn(k)?;
        self.wait_ready(Duration::from_secs(30))
    }

    /// The tail of node `k`'s log (for failure messages).
    pub fn log_tail(&self, k: usize) -> String {
        let s = std::fs::read_to_string(&self.nodes[k].log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until every running node says it is healthy (`/healthz` on the monitoring
    /// port: on 2.9 that includes JetStream in contact with a meta leader).
    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        for k in 0..self.nodes.len() {
            if self.nodes[k].child.is_none() {
                continue;
            }
            loop {
                if healthz(self.nodes[k].monitor_port) {
                    break;
                }
                let exited = matches!(
                    self.nodes[k].child.as_mut().map(|c| c.try_wait()),
                    Some(Ok(Some(_)))
                );
                if exited {
                    // A server that exited (a port taken meanwhile) will not be ready.
                    anyhow::bail!(
                        "nats-server {} exited while starting; log tail:\n{}",
                        self.nodes[k].name,
                        self.log_tail(k)
                    );
                }
                if Instant::now() >= deadline {
                    anyhow::bail!(
                        "nats-server {} did not become ready within {limit:?}; log tail:\n{}",
                        self.nodes[k].name,
                        self.log_tail(k)
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        Ok(())
    }
}

/// `GET /healthz` answers 200 with `"status":"ok"`.
fn healthz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    (body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200")) && body.contains("ok")
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for k in 0..self.nodes.len() {
            self.kill(k);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Blocking helpers for tests: a client on a private runtime.
pub struct Probe {
    rt: tokio::runtime::Runtime,
    js: async_nats::jetstream::Context,
}

impl Probe {
    /// Connects to `urls`.
    pub fn connect(urls: &str) -> anyhow::Result<Probe> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let opts = crate::NatsOptions::new(urls);
        let js = rt.block_on(async {
            let c = crate::connect(&opts).await?;
            anyhow::Ok(crate::jetstream(c, &opts))
        })?;
        Ok(Probe { rt, js })
    }

    /// (messages stored, leader node name) of `stream`, or `None` while it does not exist
    /// or has no leader.
    pub fn stream(&self, stream: &str) -> Option<(u64, String)> {
        self.rt.block_on(async {
            let s = self.js.get_stream(stream).await.ok()?;
            let info = s.get_info().await.ok()?;
            let leader = info.cluster.and_then(|c| c.leader).unwrap_or_default();
            Some((info.state.messages, leader))
        })
    }

    /// Messages of `stream` on subjects matching `filter` (0 when none or no stream).
    pub fn count(&self, stream: &str, filter: &str) -> u64 {
        use futures_util::StreamExt;
        self.rt.block_on(async {
            let Ok(s) = self.js.get_stream(stream).await else {
                return 0;
            };
            let Ok(mut subjects) = s.info_with_subjects(filter).await else {
                return 0;
            };
            let mut n = 0u64;
            while let Some(Ok((_, c))) = subjects.next().await {
                n += c as u64;
            }
            n
        })
    }

    /// Deletes message `seq` of `stream`.
    pub fn delete(&self, stream: &str, seq: u64) -> anyhow::Result<()> {
        self.rt.block_on(async {
            let s = self
                .js
                .get_stream(stream)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            s.delete_message(seq)
                .await
                .map_err(|e| anyhow::anyhow!("deleting {stream} #{seq}: {e}"))?;
            Ok(())
        })
    }

    /// Every message of `stream` under `filter`, in stream order: (stream seq, subject,
    /// headers as (name, value) pairs, payload length).
    #[allow(clippy::type_complexity)]
    pub fn messages(
        &self,
        stream: &str,
        filter: &str,
    ) -> anyhow::Result<Vec<(u64, String, Vec<(String, String)>, usize)>> {
        use futures_util::StreamExt;
        self.rt.block_on(async {
            let s = self
                .js
                .get_stream(stream)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let total = s
                .get_info()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .state
                .messages;
            let mut out = Vec::new();
            if total == 0 {
                return Ok(out);
            }
            let max_payload = self.js.client().server_info().max_payload;
            let mut msgs =
                crate::ordered(&s, filter.to_string(), Default::default(), max_payload).await?;
            while let Some(m) = tokio::time::timeout(Duration::from_secs(10), msgs.next()).await? {
                let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
                let info = m.info().map_err(|e| anyhow::anyhow!("{e}"))?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                let hd = m
                    .headers
                    .iter()
                    .flat_map(|h| h.iter())
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
                    .collect();
                out.push((seq, m.subject.to_string(), hd, m.payload.len()));
                if pending == 0 {
                    break;
                }
            }
            Ok(out)
        })
    }
}
