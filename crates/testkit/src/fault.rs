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
}

impl FaultyLink {
    /// Starts relaying `127.0.0.1:<free port>` → `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultyLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let local = listener.local_addr().expect("a bound address");
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let upstream = upstream.to_owned();
        let relay_cut = Arc::clone(&cut);
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
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watcher.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        FaultyLink { local, cut }
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
}

/// A private tansu broker reachable only through a [`FaultyLink`]: it advertises the link's
/// address, so every client connection (bootstrap and after) can be cut. Killed on drop.
pub struct PrivateBroker {
    pub link: FaultyLink,
    _process: tokio::process::Child,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let tansu = crate::Stack::get()
            .tansu_bin
            .clone()
            .expect("SLUICE_TANSU_BIN is not set: start the services with `scripts/dev services`");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let upstream = format!("127.0.0.1:{port}");
        let link = FaultyLink::start(&upstream).await;
        let process = tokio::process::Command::new(tansu)
            .args(["broker", "--listener-url", &format!("tcp://{upstream}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://{}", link.address()),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        for _ in 0..100 {
            if TcpStream::connect(&upstream).await.is_ok() {
                return PrivateBroker {
                    link,
                    _process: process,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the private tansu broker did not start on {upstream}");
    }

    /// Bootstrap address for clients: the link.
    pub fn brokers(&self) -> String {
        self.link.address()
    }
}
