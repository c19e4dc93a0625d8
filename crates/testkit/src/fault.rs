//! Network faults between a service and a real server: a TCP relay on loopback that can cut
//! every connection and refuse new ones, then heal. The server behind it stays real; only the
//! link fails, the way a network partition or a server restart looks to the client.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay from a local port to `upstream`.
pub struct FaultyLink {
    local: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    /// Bumped by [`go_stale`](Self::go_stale): connections opened before it go stale.
    generation: Arc<watch::Sender<u64>>,
    /// While true, nothing is relayed and nothing is refused: a frozen server.
    frozen: Arc<watch::Sender<bool>>,
}

impl FaultyLink {
    /// Starts relaying `127.0.0.1:<free port>` → `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultyLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let local = listener.local_addr().expect("a bound address");
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let (generation, _) = watch::channel(0_u64);
        let generation = Arc::new(generation);
        let (frozen, _) = watch::channel(false);
        let frozen = Arc::new(frozen);
        let relay_frozen = Arc::clone(&frozen);
        let upstream = upstream.to_owned();
        let relay_cut = Arc::clone(&cut);
        let relay_generation = Arc::clone(&generation);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if *relay_cut.borrow() {
                    drop(client);
                    continue;
                }
                let mut watcher = relay_cut.subscribe();
                let mut stale = relay_generation.subscribe();
                let born = *stale.borrow();
                let mut frozen = relay_frozen.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    // A frozen server accepts, then says nothing until it thaws.
                    let _ = frozen.wait_for(|frozen| !*frozen).await.map(|_| ());
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    let went_stale = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = async { watcher.wait_for(|cut| *cut).await.map(|_| ()) } => false,
                        _ = async { stale.wait_for(|now| *now > born).await.map(|_| ()) } => true,
                        _ = async { frozen.wait_for(|frozen| *frozen).await.map(|_| ()) } => {
                            // Held open, silent, until the thaw; then closed.
                            let _ = frozen.wait_for(|frozen| !*frozen).await.map(|_| ());
                            false
                        }
                    };
                    if went_stale {
                        // The server side is gone, unseen: the next request written on this
                        // connection is answered with a reset, as a server that closed an
                        // idle connection answers it.
                        drop(server);
                        let mut byte = [0_u8; 1];
                        let _ = tokio::io::AsyncReadExt::read(&mut client, &mut byte).await;
                        let _ = client.set_zero_linger();
                    }
                });
            }
        });
        FaultyLink {
            local,
            cut,
            generation,
            frozen,
        }
    }

    /// `host:port` to give the service instead of the server's.
    pub fn address(&self) -> String {
        self.local.to_string()
    }

    /// Drops every open connection and refuses new ones until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Freezes the link, as `kill -STOP` freezes a server: connections are accepted and held,
    /// requests are never answered, nothing is refused, until [`thaw`](Self::thaw) (which
    /// closes the connections that were held and relays new ones again).
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Makes every open connection stale without the client noticing: the next request sent
    /// on one is answered with a TCP reset (what a pooled connection that outlived the
    /// server's keep-alive meets). New connections work.
    pub fn go_stale(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }
}

/// A private tansu broker reachable only through a [`FaultyLink`]: it advertises the link's
/// address, so every client connection (bootstrap and after) can be cut. Killed on drop.
pub struct PrivateBroker {
    pub link: FaultyLink,
    upstream: String,
    process: tokio::process::Child,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let upstream = format!("127.0.0.1:{port}");
        let link = FaultyLink::start(&upstream).await;
        let process = start_tansu(&upstream, &link.address()).await;
        PrivateBroker {
            link,
            upstream,
            process,
        }
    }

    /// Bootstrap address for clients: the link.
    pub fn brokers(&self) -> String {
        self.link.address()
    }

    /// Kills the broker and starts a new one in its place, the way a broker restart without
    /// its data looks to clients: same address, no topics, no transactional ids, no groups.
    pub async fn restart(&mut self) {
        let _ = self.process.start_kill();
        let _ = self.process.wait().await;
        self.process = start_tansu(&self.upstream, &self.link.address()).await;
    }
}

/// Starts tansu listening on `upstream` and advertising `advertised`; waits until it accepts.
async fn start_tansu(upstream: &str, advertised: &str) -> tokio::process::Child {
    let tansu = crate::Stack::get()
        .tansu_bin
        .clone()
        .expect("SLUICE_TANSU_BIN is not set: start the services with `scripts/dev services`");
    let process = tokio::process::Command::new(tansu)
        .args(["broker", "--listener-url", &format!("tcp://{upstream}")])
        .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
        .args(["--storage-engine", "memory://tansu/"])
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("tansu starts");
    for _ in 0..100 {
        if TcpStream::connect(upstream).await.is_ok() {
            return process;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the private tansu broker did not start on {upstream}");
}
