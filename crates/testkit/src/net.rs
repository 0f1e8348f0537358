//! A local network of in-process nodes on 127.0.0.1 with freshly generated certificates:
//! what the `demo` command runs, and what tests and benchmarks build their networks with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::net::SocketAddr;

use chainmesh::amop::{Amop, AmopError, AmopHandle};
use chainmesh::config::{Config, IdentityConfig, TimersConfig};
use chainmesh::identity::IdentityError;
use chainmesh::identity::{generate_node_files, Curve, GeneratedNode};
use chainmesh::node::{Node, NodeError, NodeHandle};
use chainmesh_admin::{Access, AdminToken};
use tokio_util::sync::CancellationToken;

/// Why a local network could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalNetError {
    /// Certificates could not be made.
    #[error("generating certificates: {0}")]
    Identity(#[from] IdentityError),
    /// A node did not start.
    #[error("starting node {index}: {source}")]
    Node {
        /// Which node.
        index: usize,
        /// Why.
        source: NodeError,
    },
    /// The temporary directory could not be made.
    #[error("creating a temporary directory: {0}")]
    TempDir(std::io::Error),
    /// A node's AMOP (channel port) did not start.
    #[error("node {index}: AMOP: {source}")]
    Amop {
        /// Which node.
        index: usize,
        /// Why.
        source: AmopError,
    },
    /// A node's admin API could not listen.
    #[error("node {index}: admin API: {source}")]
    Admin {
        /// Which node.
        index: usize,
        /// Why.
        source: std::io::Error,
    },
}

/// A node of the network while it runs, with its admin API if it serves one.
struct Running {
    node: Node,
    admin: Option<Admin>,
    amop: Option<AmopHandle>,
}

/// A node's admin API: where it listens, the token its writes need, and its stop switch.
struct Admin {
    addr: SocketAddr,
    token: AdminToken,
    stop: CancellationToken,
}

impl Running {
    /// Starts a node from `cfg`, and its admin API (with a fresh token) when
    /// `cfg.admin.listen` is set.
    async fn start(index: usize, cfg: Config) -> Result<Running, LocalNetError> {
        let settings = cfg.admin.clone();
        let node = Node::start(cfg.clone(), None)
            .await
            .map_err(|source| LocalNetError::Node { index, source })?;
        let amop = if cfg.channel.listen.is_empty() {
            None
        } else {
            match Amop::start(&node.handle(), &cfg).await {
                Ok(amop) => Some(amop),
                Err(source) => {
                    node.shutdown().await;
                    return Err(LocalNetError::Amop { index, source });
                }
            }
        };
        let admin = if settings.listen.is_empty() {
            None
        } else {
            let stop = CancellationToken::new();
            let served = match AdminToken::generate() {
                Ok(token) => chainmesh_admin::serve(
                    &settings.listen,
                    node.handle(),
                    amop.clone(),
                    Access::ReadWrite(token.clone()),
                    &settings,
                    stop.clone(),
                )
                .await
                .map(|addr| Admin { addr, token, stop }),
                Err(e) => Err(std::io::Error::other(e)),
            };
            match served {
                Ok(admin) => Some(admin),
                Err(source) => {
                    if let Some(amop) = &amop {
                        amop.shutdown().await;
                    }
                    node.shutdown().await;
                    return Err(LocalNetError::Admin { index, source });
                }
            }
        };
        Ok(Running { node, admin, amop })
    }

    async fn stop(self) {
        if let Some(admin) = &self.admin {
            admin.stop.cancel();
        }
        if let Some(amop) = &self.amop {
            amop.shutdown().await;
        }
        self.node.shutdown().await;
    }
}

/// How to build a local network.
#[derive(Debug, Clone)]
pub struct LocalNetOptions {
    /// How many nodes.
    pub nodes: usize,
    /// Certificate curve.
    pub curve: Curve,
    /// Timers for every node.
    pub timers: TimersConfig,
    /// Whether each node serves the admin API (on an ephemeral port).
    pub admin: bool,
    /// Changes applied to each node's config before it starts (index, config).
    pub tweak: Option<fn(usize, &mut Config)>,
    /// Whether each node runs AMOP with a channel port (on an ephemeral port), stopped and
    /// restarted with its node.
    pub amop: bool,
}

impl LocalNetOptions {
    /// `n` nodes with [`fast_timers`](crate::fast_timers), admin API off: drops are noticed
    /// within 300 ms and redialed within 400 ms, which is what tests of connections want.
    pub fn new(n: usize) -> Self {
        LocalNetOptions {
            nodes: n,
            curve: Curve::Secp256k1,
            timers: crate::fast_timers(),
            admin: false,
            tweak: None,
            amop: false,
        }
    }

    /// `n` nodes whose heartbeat and status intervals are twice those of
    /// [`fast_timers`](crate::fast_timers) (idle timeout 600 ms): for networks that carry
    /// application traffic (the demo, the examples, the messaging tests), which test
    /// delivery, not failure detection. On a loaded 2-core machine a node busy moving bulk
    /// data can fall silent for a few hundred milliseconds; the longer idle timeout keeps such
    /// a link from being dropped as dead in the middle of a test about something else.
    pub fn for_traffic(n: usize) -> Self {
        let fast = crate::fast_timers();
        LocalNetOptions {
            timers: TimersConfig {
                heartbeat_interval: 2 * fast.heartbeat_interval,
                status_interval: 2 * fast.status_interval,
                ..fast
            },
            ..Self::new(n)
        }
    }
}

/// The config of a generated node on an ephemeral port of 127.0.0.1, with default timers and
/// the admin API off: what [`LocalNet`] starts from, and what tests and benchmarks adjust.
pub fn node_config(g: &GeneratedNode) -> Config {
    let mut cfg = Config::new(
        IdentityConfig {
            ca_cert: g.ca_cert(),
            node_cert: g.node_cert(),
            node_key: g.node_key(),
        },
        "127.0.0.1:0",
    );
    cfg.admin.listen = String::new();
    cfg
}

/// A running local network. Node `i`'s files are under `dir()/node{i}`.
pub struct LocalNet {
    nodes: Vec<Option<Running>>,
    generated: Vec<GeneratedNode>,
    configs: Vec<Config>,
    _dir: tempfile::TempDir,
}

impl LocalNet {
    /// Generates certificates in a temporary directory and starts every node on an
    /// ephemeral port, with no peers yet: connect them with [`connect`](Self::connect) or a
    /// topology helper.
    pub async fn start(opts: LocalNetOptions) -> Result<LocalNet, LocalNetError> {
        let dir = tempfile::Builder::new()
            .prefix("chainmesh-net-")
            .tempdir()
            .map_err(LocalNetError::TempDir)?;
        let generated = generate_node_files(dir.path(), opts.nodes, opts.curve)?;
        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        for (index, g) in generated.iter().enumerate() {
            let mut cfg = node_config(g);
            cfg.timers = opts.timers.clone();
            cfg.admin.listen = if opts.admin {
                "127.0.0.1:0".into()
            } else {
                String::new()
            };
            if opts.amop {
                cfg.channel.listen = "127.0.0.1:0".into();
            }
            if let Some(tweak) = opts.tweak {
                tweak(index, &mut cfg);
            }
            nodes.push(Some(Running::start(index, cfg.clone()).await?));
            configs.push(cfg);
        }
        Ok(LocalNet {
            nodes,
            generated,
            configs,
            _dir: dir,
        })
    }

    /// Where the certificates are.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Node `i`'s generated files.
    pub fn generated(&self, i: usize) -> &GeneratedNode {
        &self.generated[i]
    }

    /// The number of nodes (running or stopped).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the network has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A handle to node `i`, if it is running.
    pub fn try_handle(&self, i: usize) -> Option<NodeHandle> {
        self.nodes.get(i)?.as_ref().map(|r| r.node.handle())
    }

    /// A handle to node `i`. Panics if `i` is out of range or stopped: a test's mistake.
    pub fn handle(&self, i: usize) -> NodeHandle {
        match self.try_handle(i) {
            Some(h) => h,
            None => panic!("node {i} is not running"),
        }
    }

    /// The hops in which node `i` (running) reaches node `j` (running or stopped), if it has
    /// a route to it.
    pub fn hops(&self, i: usize, j: usize) -> Option<u8> {
        let target = self.generated(j).node_id;
        self.handle(i)
            .reachable_nodes()
            .into_iter()
            .find_map(|(n, d)| (n == target).then_some(d))
    }

    /// Node `i`'s admin API address, if it serves one.
    pub fn admin_addr(&self, i: usize) -> Option<SocketAddr> {
        self.nodes.get(i)?.as_ref()?.admin.as_ref().map(|a| a.addr)
    }

    /// The token node `i`'s admin API wants on writes (`Authorization: Bearer <token>`), if
    /// it serves one.
    pub fn admin_token(&self, i: usize) -> Option<String> {
        let admin = self.nodes.get(i)?.as_ref()?.admin.as_ref()?;
        Some(admin.token.as_str().to_owned())
    }

    /// Node `i`'s P2P address as a peer address string.
    pub fn addr(&self, i: usize) -> String {
        self.handle(i).listen_addr().to_string()
    }

    /// Node `i`'s AMOP. Panics if node `i` is stopped or runs no AMOP: a test's mistake.
    pub fn amop(&self, i: usize) -> AmopHandle {
        match self
            .nodes
            .get(i)
            .and_then(Option::as_ref)
            .and_then(|r| r.amop.clone())
        {
            Some(a) => a,
            None => panic!("node {i} runs no AMOP"),
        }
    }

    /// Node `i`'s channel port address, for an SDK client. Panics as [`amop`](Self::amop)
    /// does, or if it has no channel port.
    pub fn channel_addr(&self, i: usize) -> String {
        match self.amop(i).local_addr() {
            Some(a) => a.to_string(),
            None => panic!("node {i} has no channel port"),
        }
    }

    /// Makes node `i` keep a connection to node `j`.
    pub fn connect(&self, i: usize, j: usize) {
        self.handle(i).peers().add_target(&self.addr(j));
    }

    /// Every node dials every other node (both directions: the duplicate rule keeps one).
    pub fn connect_full_mesh(&self) {
        for i in 0..self.len() {
            for j in 0..self.len() {
                if i != j {
                    self.connect(i, j);
                }
            }
        }
    }

    /// Node `i` dials node `i+1`: a line 0-1-2-...
    pub fn connect_line(&self) {
        for i in 1..self.len() {
            self.connect(i - 1, i);
        }
    }

    /// Whether node `i` has exactly `n` live sessions.
    pub fn has_peers(&self, i: usize, n: usize) -> bool {
        self.try_handle(i)
            .is_some_and(|h| h.peers().sessions().len() == n)
    }

    /// Whether every running node is connected to every other running node.
    pub fn is_full_mesh(&self) -> bool {
        let running = self.nodes.iter().flatten().count();
        (0..self.len())
            .filter(|i| self.nodes[*i].is_some())
            .all(|i| self.has_peers(i, running - 1))
    }

    /// Polls `cond` on this network until it holds or `timeout` passes, as
    /// [`wait_until`](crate::wait_until) does; returns whether it held.
    pub async fn wait_for(&self, timeout: Duration, cond: impl Fn(&LocalNet) -> bool) -> bool {
        crate::wait_until(timeout, || cond(self)).await
    }

    /// Stops node `i` gracefully (it says goodbye to its peers).
    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.stop().await;
        }
    }

    /// Starts node `i` again with its original config, on a new ephemeral port.
    pub async fn restart(&mut self, i: usize) -> Result<(), LocalNetError> {
        self.stop(i).await;
        self.nodes[i] = Some(Running::start(i, self.configs[i].clone()).await?);
        Ok(())
    }

    /// The config node `i` was started with.
    pub fn config(&self, i: usize) -> &Config {
        &self.configs[i]
    }

    /// Node `i`'s config file path if it were written out: `dir()/node{i}/config.toml`.
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.generated[i].dir.join("config.toml")
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}
