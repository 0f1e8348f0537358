//! The measurement harness every system shares: the [`System`] interface the three
//! contenders implement, tokio runtimes with pinned workers and per-thread CPU clocks, memory
//! readings, and small statistics.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::runtime::Runtime;

// ---------------------------------------------------------------------------------------------
// What a system under test offers
// ---------------------------------------------------------------------------------------------

/// Counters that every receiver of a topology adds to, so the harness sees deliveries the
/// same way whatever system made them.
#[derive(Debug, Default)]
pub struct Sink {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Sink {
    /// Counts one delivered message of `len` payload bytes.
    pub fn record(&self, len: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Messages delivered so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

/// What the receivers of a topology do with what arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// Count one-way messages, answer requests with their own payload.
    Serve,
    /// Accept the connection, then never read from it again (a consumer that hangs).
    Stall,
}

/// Which traffic class a request travels in, where a system has classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A module configured to go ahead of bulk traffic (chainmesh: `p2p.priority_modules`).
    Priority,
    /// A module of its own, queued with everything else (today's single queue).
    Ordinary,
    /// A module answered on the task that read the request, with no hand-off to an
    /// application task (chainmesh: `NodeHandle::register_handler`), as the baseline
    /// answers every request.
    OnTask,
    /// A priority module answered on the task that read the request: both of the above.
    PriorityOnTask,
}

/// The sending side of a topology: one node connected to [`receivers`](Sender::receivers)
/// others, used through the system's own API.
pub trait Sender: Send + Sync + 'static {
    /// How many receivers this sender is connected to.
    fn receivers(&self) -> usize;

    /// Sends a one-way message to receiver `to`; returns once the system has taken it,
    /// waiting for room the way the system's API does.
    fn send(&self, to: usize, payload: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Sends a request to receiver `to` and waits for its response.
    fn request(&self, to: usize, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send;

    /// Sends a request in `class` to receiver `to` and waits for its response; on a module
    /// other than the one [`send`](Sender::send) uses where the system has modules. The
    /// default, for systems with one class, is [`request`](Sender::request).
    fn request_in(
        &self,
        to: usize,
        class: Class,
        payload: Bytes,
    ) -> impl Future<Output = Result<Bytes>> + Send {
        let _ = class;
        self.request(to, payload)
    }

    /// Whether [`request_in`](Sender::request_in) tells the classes apart.
    fn has_classes(&self) -> bool {
        false
    }

    /// Limits what the sender sends on each link to `bytes_per_sec` (`None`: no limit),
    /// [`Class::Priority`] and [`Class::PriorityOnTask`] requests exempt, as a real link's
    /// bandwidth would limit it. Returns false for a system that has no such limit.
    fn limit_links(&self, bytes_per_sec: Option<u64>) -> bool {
        let _ = bytes_per_sec;
        false
    }

    /// Sends the same payload to every receiver, the best way the system offers. The
    /// default is one [`send`](Sender::send) per receiver.
    fn send_to_all(&self, payload: Bytes) -> impl Future<Output = Result<()>> + Send {
        async move {
            for to in 0..self.receivers() {
                self.send(to, payload.clone()).await?;
            }
            Ok(())
        }
    }

    /// How [`send_to_all`](Sender::send_to_all) works, for the report.
    fn send_to_all_label(&self) -> &'static str {
        "one send per peer"
    }
}

/// A sender connected to its receivers. Dropping it releases the nodes; their tasks end when
/// the runtimes they run on shut down.
pub struct Star<T: Sender> {
    /// The sending side.
    pub sender: Arc<T>,
    /// What the receivers count.
    pub sink: Arc<Sink>,
    /// Whatever must stay alive for the topology to work (nodes, streams, queues).
    pub _keep: Box<dyn Any + Send>,
}

/// One contender: chainmesh, the bare-TLS baseline or rust-libp2p.
pub trait System {
    /// The name the report uses.
    const NAME: &'static str;
    /// A short name for progress lines and command-line filters.
    const SHORT: &'static str;
    /// The sending side of a star.
    type Sender: Sender;
    /// A set of started, unconnected nodes.
    type Nodes: Send + 'static;

    /// Starts one sender on `sides.sender` connected to `receivers` receivers on
    /// `sides.receiver`; returns once every connection is up.
    fn star(&self, sides: &Sides, receivers: usize, mode: Receive) -> Result<Star<Self::Sender>>;

    /// Starts `n` nodes on `rt`, listening, with no connection yet.
    fn nodes(&self, rt: &Pinned, n: usize) -> Result<Self::Nodes>;

    /// Connects every pair of `nodes` once; returns when all are connected.
    fn connect_mesh(&self, rt: &Pinned, nodes: &Self::Nodes) -> Result<()>;

    /// Nodes 1.. connect to node 0 all at once (full mutual-TLS handshakes); returns how
    /// long until every connection was up, then disconnects them all (not timed).
    fn connect_burst(&self, rt: &Pinned, nodes: &Self::Nodes) -> Result<Duration>;
}

// ---------------------------------------------------------------------------------------------
// Runtimes, placement and CPU time
// ---------------------------------------------------------------------------------------------

/// CPUs this process may run on, as the kernel reports them.
pub fn available_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread to `cpu`; returns whether the kernel agreed.
fn pin_current_thread(cpu: usize) -> bool {
    // SAFETY: as above; pid 0 means the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The CPU-time clock of the calling thread, readable from any thread while it lives.
fn current_thread_clock() -> Option<libc::clockid_t> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self is always valid for the calling thread.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    (rc == 0).then_some(clock)
}

fn read_clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; a clock of a thread that exited gives an error.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time of each thread of a runtime at one instant.
pub struct CpuSnapshot(Vec<(libc::clockid_t, Option<Duration>)>);

impl CpuSnapshot {
    /// CPU time spent since `earlier`, summed over threads alive at both instants.
    pub fn since(&self, earlier: &CpuSnapshot) -> Duration {
        self.0
            .iter()
            .filter_map(|(clock, now)| {
                let then = earlier.0.iter().find(|(c, _)| c == clock)?.1?;
                Some(now.as_ref()?.saturating_sub(then))
            })
            .sum()
    }
}

/// A multi-thread tokio runtime whose threads are pinned to given CPUs (when pinning is on)
/// and whose CPU time can be read.
pub struct Pinned {
    rt: Option<Runtime>,
    clocks: Arc<Mutex<Vec<libc::clockid_t>>>,
    /// Where its workers run, for the report.
    pub placement: String,
}

impl Pinned {
    /// A runtime with one worker per entry of `cpus`, worker `i` pinned to `cpus[i]`, or
    /// unpinned when `cpus` is `None`.
    pub fn new(name: &str, workers: usize, cpus: Option<&[usize]>) -> Result<Pinned> {
        let clocks = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let cpu_list: Vec<usize> = cpus.map(<[usize]>::to_vec).unwrap_or_default();
        let placement = match cpus {
            Some(c) => format!(
                "{workers} worker{} pinned to cpu {}",
                if workers == 1 { "" } else { "s" },
                c.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
            ),
            None => format!("{workers} unpinned workers"),
        };
        let on_start = {
            let clocks = clocks.clone();
            move || {
                // Blocking-pool threads get pinned round-robin too; they stay idle here.
                if !cpu_list.is_empty() {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    pin_current_thread(cpu_list[i % cpu_list.len()]);
                }
                if let Some(c) = current_thread_clock() {
                    clocks.lock().push(c);
                }
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .on_thread_start(on_start)
            .enable_all()
            .build()
            .with_context(|| format!("building the {name} runtime"))?;
        Ok(Pinned {
            rt: Some(rt),
            clocks,
            placement,
        })
    }

    fn rt(&self) -> &Runtime {
        // Only `Drop` takes the runtime out.
        self.rt.as_ref().expect("runtime used after shutdown")
    }

    /// Runs `fut` on one of this runtime's workers (not on the calling thread) and waits.
    pub fn run<F>(&self, fut: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.rt();
        rt.block_on(rt.spawn(fut))
            .map_err(|e| anyhow!("benchmark task failed: {e}"))
    }

    /// Starts `fut` on this runtime in the background.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.rt().spawn(fut);
    }

    /// The CPU time of every thread of the runtime now.
    pub fn cpu(&self) -> CpuSnapshot {
        CpuSnapshot(
            self.clocks
                .lock()
                .iter()
                .map(|&c| (c, read_clock(c)))
                .collect(),
        )
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Where the two sides of a topology run.
pub struct Sides {
    /// The sender's runtime.
    pub sender: Arc<Pinned>,
    /// The receivers' runtime; the same as `sender` in the shared layout.
    pub receiver: Arc<Pinned>,
    /// For the report.
    pub placement: String,
}

impl Sides {
    /// Both sides on one 2-worker runtime: the layout of most figures.
    pub fn shared(pin: bool) -> Result<Sides> {
        let cpus = pin_pair(pin);
        let rt = Arc::new(Pinned::new("bench", 2, cpus.as_ref().map(|c| &c[..]))?);
        let placement = format!("one runtime, {}", rt.placement);
        Ok(Sides {
            sender: rt.clone(),
            receiver: rt,
            placement,
        })
    }

    /// The sender on a 1-worker runtime and the receivers on another, each on its own CPU,
    /// so the sender's CPU time can be read on its own.
    pub fn split(pin: bool) -> Result<Sides> {
        let cpus = pin_pair(pin);
        let (a, b) = match &cpus {
            Some([a, b]) => (Some(vec![*a]), Some(vec![*b])),
            None => (None, None),
        };
        let sender = Arc::new(Pinned::new("send", 1, a.as_deref())?);
        let receiver = Arc::new(Pinned::new("recv", 1, b.as_deref())?);
        let placement = format!(
            "sender: {}; receivers: {}",
            sender.placement, receiver.placement
        );
        Ok(Sides {
            sender,
            receiver,
            placement,
        })
    }
}

/// The two CPUs to pin to, or `None` when pinning is off or fewer than two are usable.
fn pin_pair(pin: bool) -> Option<[usize; 2]> {
    if !pin {
        return None;
    }
    match available_cpus()[..] {
        [a, b, ..] => Some([a, b]),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting, memory
// ---------------------------------------------------------------------------------------------

/// Polls `cond` every millisecond until it holds (the wait often ends a measured interval, so
/// it polls finer than the tests do); fails after `timeout` naming `what`.
pub async fn wait_until(timeout: Duration, what: &str, cond: impl Fn() -> bool) -> Result<()> {
    if chainmesh_testkit::wait_until_every(timeout, Duration::from_millis(1), cond).await {
        Ok(())
    } else {
        bail!("timed out after {timeout:?} waiting for {what}")
    }
}

/// Samples the process's RSS on its own thread until dropped; keeps the peak.
pub struct RssPeak {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssPeak {
    /// Starts sampling every `every`.
    pub fn start(every: Duration) -> RssPeak {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(crate::memory::rss_bytes().unwrap_or(0));
                std::thread::sleep(every);
            }
            peak.max(crate::memory::rss_bytes().unwrap_or(0))
        });
        RssPeak {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns the highest RSS seen.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/// Median, minimum and maximum of some repetitions.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// Summarizes `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// The `q`-quantile (0..=1) of sorted samples, nearest-rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
