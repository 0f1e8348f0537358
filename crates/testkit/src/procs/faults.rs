//! The fault run on a loaded process network: two nodes killed with SIGKILL and started
//! again, one frozen with SIGSTOP for longer than the idle timeout and thawed, one restarted
//! on a new certificate from the same CA; after each, the time until the mesh is whole again;
//! at the end every node stopped with SIGTERM and its load reports added up. The fault test
//! and the fault example run this one scenario.

use std::time::Duration;

use super::{ProcError, ProcNet, Totals, WholeTimes};

/// Which nodes the faults hit and how long the phases last.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// The two nodes killed with SIGKILL and started again.
    pub killed: [usize; 2],
    /// The node frozen with SIGSTOP.
    pub stopped: usize,
    /// How long it stays frozen: longer than the idle timeout, so its peers drop it.
    pub stop_for: Duration,
    /// The node restarted on a new certificate (a new node ID).
    pub renewed: usize,
    /// How long the load runs between one whole mesh and the next fault.
    pub steady: Duration,
    /// How long the mesh may take to become whole after a fault.
    pub whole_timeout: Duration,
}

impl FaultPlan {
    /// Nodes 1 and 2 killed, 3 frozen for twice `idle_timeout`, 4 renewed, with `steady`
    /// load between faults and a minute for each mesh to heal.
    pub fn new(idle_timeout: Duration, steady: Duration) -> FaultPlan {
        FaultPlan {
            killed: [1, 2],
            stopped: 3,
            stop_for: 2 * idle_timeout,
            renewed: 4,
            steady,
            whole_timeout: Duration::from_secs(60),
        }
    }
}

/// One fault and how the mesh came back from it.
#[derive(Debug, Clone)]
pub struct FaultStep {
    /// What was done, e.g. `kill -9 node1 node2`.
    pub fault: String,
    /// How long links, routes and statuses took to be whole again, from the end of the
    /// fault (the kill, the restart, the SIGCONT).
    pub times: WholeTimes,
}

/// What a fault run gave.
#[derive(Debug, Clone)]
pub struct FaultRun {
    /// Each fault in order, the first being the start of the network.
    pub steps: Vec<FaultStep>,
    /// Each node's totals over its runs.
    pub nodes: Vec<Totals>,
    /// The network's totals.
    pub total: Totals,
}

/// Runs the faults of `plan` on `net` (at least 5 nodes, all running, with load) and stops
/// every node at the end. Fails when a node does not start or stop, when the load does not
/// get going within `plan.whole_timeout`, or when the mesh is not whole again in time.
pub fn run_faults(net: &mut ProcNet, plan: &FaultPlan) -> Result<FaultRun, ProcError> {
    let mut steps = Vec::new();
    let mut step = |net: &ProcNet, fault: String| -> Result<(), ProcError> {
        let times = net.wait_whole(plan.whole_timeout)?;
        steps.push(FaultStep { fault, times });
        Ok(())
    };
    step(net, format!("start {} nodes", net.len()))?;
    let answering = net.wait_for(plan.whole_timeout, |net| {
        (0..net.len()).all(|i| {
            net.last_report(i)
                .ok()
                .flatten()
                .is_some_and(|r| r.requests.answered > 0)
        })
    });
    if !answering {
        return Err(ProcError::Timeout {
            what: "every node answered a request".into(),
            timeout: plan.whole_timeout,
        });
    }
    std::thread::sleep(plan.steady);

    let [a, b] = plan.killed;
    net.kill9(a)?;
    net.kill9(b)?;
    step(net, format!("kill -9 node{a} node{b}"))?;
    std::thread::sleep(plan.steady);
    net.start(a)?;
    net.start(b)?;
    step(net, format!("restart node{a} node{b}"))?;
    std::thread::sleep(plan.steady);

    let s = plan.stopped;
    net.sigstop(s)?;
    std::thread::sleep(plan.stop_for);
    net.sigcont(s)?;
    step(
        net,
        format!("SIGSTOP node{s} for {:?}, SIGCONT", plan.stop_for),
    )?;
    std::thread::sleep(plan.steady);

    let r = plan.renewed;
    net.renew_cert(r)?;
    step(net, format!("restart node{r} on a new certificate"))?;
    std::thread::sleep(plan.steady);

    net.terminate_all()?;
    let mut nodes = Vec::with_capacity(net.len());
    let mut total = Totals::default();
    for i in 0..net.len() {
        let t = Totals::of(&net.reports(i)?);
        total.add(&t);
        nodes.push(t);
    }
    Ok(FaultRun {
        steps,
        nodes,
        total,
    })
}
