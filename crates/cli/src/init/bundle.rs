//! What a host needs beside its nodes' files: the inventory, a start and a stop script, and a
//! systemd unit per node. Everything is made from the inventory, so `init` and `add-node`
//! write the same files.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::inventory::{Inventory, INVENTORY_FILE};

/// Where a host folder is installed, for the systemd units.
#[derive(Debug, Clone)]
pub struct Install {
    /// The directory the host folder is copied to on the host.
    pub dir: String,
    /// The `chainmesh` binary on the host.
    pub bin: String,
}

/// The folder (relative to the bundle root) that holds `host`'s nodes: the parent of their
/// directories, the root itself for a one-host layout.
pub fn host_folder(inv: &Inventory, host: &str) -> PathBuf {
    inv.on_host(host)
        .next()
        .and_then(|n| Path::new(&n.dir).parent().map(Path::to_owned))
        .unwrap_or_default()
}

/// Writes the inventory at the bundle root and in every host folder, and each host's
/// scripts and units.
pub fn write_all(root: &Path, inv: &Inventory, install: &Install) -> anyhow::Result<()> {
    inv.write(&root.join(INVENTORY_FILE))?;
    let mut hosts: Vec<&str> = inv.nodes.iter().map(|n| n.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    for host in hosts {
        let folder = root.join(host_folder(inv, host));
        if folder != root {
            // Each host gets the whole inventory: names of nodes on other hosts resolve there.
            inv.write(&folder.join(INVENTORY_FILE))?;
        }
        write_host_files(&folder, inv, host, install)?;
    }
    Ok(())
}

/// Writes `start.sh`, `stop.sh` and `chainmesh-<node>.service` for `host`'s nodes into its
/// folder.
fn write_host_files(
    folder: &Path,
    inv: &Inventory,
    host: &str,
    install: &Install,
) -> anyhow::Result<()> {
    let names: Vec<&str> = inv
        .on_host(host)
        .filter_map(|n| Path::new(&n.dir).file_name()?.to_str())
        .collect();
    write_script(&folder.join("start.sh"), &start_script(&names))?;
    write_script(&folder.join("stop.sh"), &stop_script(&names))?;
    for name in &names {
        let file = folder.join(format!("chainmesh-{name}.service"));
        std::fs::write(&file, unit(name, install))
            .with_context(|| format!("{}: cannot write", file.display()))?;
    }
    Ok(())
}

fn write_script(file: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(file, text).with_context(|| format!("{}: cannot write", file.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("{}: cannot make executable", file.display()))?;
    }
    Ok(())
}

/// Starts the nodes in the background from wherever the folder was copied to; a node whose
/// pid file names a live process is left alone, so running it twice starts nothing twice.
fn start_script(names: &[&str]) -> String {
    format!(
        r#"#!/bin/sh
# Starts this host's chainmesh nodes in the background; stop.sh stops them.
# The binary is $CHAINMESH_BIN, else `chainmesh` on the PATH. Each node logs to NODE/node.log.
set -eu
cd "$(dirname "$0")"
bin="${{CHAINMESH_BIN:-chainmesh}}"
for node in {names}; do
    if [ -f "$node/node.pid" ] && kill -0 "$(cat "$node/node.pid")" 2>/dev/null; then
        echo "$node: running already (pid $(cat "$node/node.pid"))"
        continue
    fi
    (
        cd "$node"
        nohup "$bin" node --config config.toml >node.out 2>>node.log </dev/null &
        echo $! >node.pid
    )
    echo "$node: started (pid $(cat "$node/node.pid"))"
done
"#,
        names = names.join(" ")
    )
}

/// Stops the nodes gracefully (SIGTERM) and waits for each to exit.
fn stop_script(names: &[&str]) -> String {
    format!(
        r#"#!/bin/sh
# Stops this host's chainmesh nodes that start.sh started: SIGTERM, then waits for them.
set -eu
cd "$(dirname "$0")"
for node in {names}; do
    [ -f "$node/node.pid" ] || continue
    pid="$(cat "$node/node.pid")"
    if kill -TERM "$pid" 2>/dev/null; then
        i=0
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 300 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$node: pid $pid did not stop within 30 s" >&2
            continue
        fi
        echo "$node: stopped"
    fi
    rm -f "$node/node.pid"
done
"#,
        names = names.join(" ")
    )
}

/// A systemd unit; `systemctl reload` sends SIGHUP, which re-reads the config.
fn unit(name: &str, install: &Install) -> String {
    let dir = format!("{}/{name}", install.dir.trim_end_matches('/'));
    format!(
        "[Unit]\n\
         Description=chainmesh node {name}\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         WorkingDirectory={dir}\n\
         ExecStart={bin} node --config {dir}/config.toml\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         LimitNOFILE=65536\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        bin = install.bin
    )
}
