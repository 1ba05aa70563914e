//! A group's plan: which app, each node's control address (qp-pool's bootstrap), RESP
//! address and device — and from it qp-pool's cluster description and each replica's
//! `usec-kv` command line. The local launcher and the config-file mode both end here, so
//! a replica is started the same way on the soft provider and on a NIC.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{Context as _, Result};

/// The replicated application each replica serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum App {
    /// The key-value store (usec-kv's own default).
    Kv,
    /// The order-matching engine.
    Orderbook,
}

impl App {
    /// Its name on usec-kv's command line and in a config file.
    pub fn name(self) -> &'static str {
        match self {
            App::Kv => "kv",
            App::Orderbook => "orderbook",
        }
    }

    /// The app called `name`.
    pub fn from_name(name: &str) -> Option<App> {
        [App::Kv, App::Orderbook].into_iter().find(|app| app.name() == name)
    }
}

/// One node of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// Where its qp-pool control listener is (the bootstrap exchange).
    pub control: SocketAddr,
    /// Where Redis clients connect; the replica listens on this very address.
    pub resp: SocketAddr,
    /// Its RDMA device: `soft:<fabric>`, `mlx5_0`, `rxe0`, ….
    pub device: String,
}

/// The whole group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlan {
    /// qp-pool's cluster name.
    pub cluster: String,
    /// qp-pool's run: the same for every node of one launch.
    pub run: String,
    /// What the replicas serve.
    pub app: App,
    /// The nodes, by node id.
    pub nodes: Vec<NodePlan>,
}

/// The ports of a local group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPorts {
    /// The front door's.
    pub front_door: u16,
    /// Each replica's RESP port.
    pub resp: Vec<u16>,
    /// Each replica's control port.
    pub control: Vec<u16>,
}

impl LocalPorts {
    /// From `base`: the front door on `base`, replica `i`'s RESP port `base + 1 + i` and
    /// its control port `base + 101 + i`; with `base` 0, ports free now.
    pub fn from_base(base: u16, replicas: usize) -> Result<LocalPorts> {
        if base == 0 {
            // Held together, so that they differ; released just before the replicas bind.
            let held: Vec<TcpListener> = (0..1 + 2 * replicas)
                .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
                .collect::<std::io::Result<_>>()
                .context("finding free ports")?;
            let ports: Vec<u16> = held
                .iter()
                .map(|listener| listener.local_addr().map(|a| a.port()))
                .collect::<std::io::Result<_>>()?;
            return Ok(LocalPorts {
                front_door: ports[0],
                resp: ports[1..1 + replicas].to_vec(),
                control: ports[1 + replicas..].to_vec(),
            });
        }
        let port = |offset: usize| {
            u16::try_from(usize::from(base) + offset).ok().context("--port too high for this many replicas")
        };
        Ok(LocalPorts {
            front_door: base,
            resp: (0..replicas).map(|i| port(1 + i)).collect::<Result<_>>()?,
            control: (0..replicas).map(|i| port(101 + i)).collect::<Result<_>>()?,
        })
    }
}

impl GroupPlan {
    /// `ports.resp.len()` replicas of `app` on loopback, on the soft fabric named `run`;
    /// `run` names this launch (its fabric too).
    pub fn local(app: App, run: &str, ports: &LocalPorts) -> GroupPlan {
        let at = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let nodes = ports
            .resp
            .iter()
            .zip(&ports.control)
            .map(|(&resp, &control)| NodePlan {
                control: at(control),
                resp: at(resp),
                device: format!("soft:{run}"),
            })
            .collect();
        GroupPlan { cluster: "usec-cluster".into(), run: run.into(), app, nodes }
    }

    /// qp-pool's cluster description of the group (see `usec_qp_pool::spec`).
    pub fn spec_text(&self) -> String {
        let mut text = format!("cluster = {}\nrun = {}\n", self.cluster, self.run);
        for (id, node) in self.nodes.iter().enumerate() {
            text.push_str(&format!("node {id} {}\n", node.control));
        }
        text
    }

    /// usec-kv's arguments for node `node`, with qp-pool's description at `spec`. A
    /// restarted replica (`rejoin`) comes back as a replacement that lost its state;
    /// `extra` goes last, so it can override the launcher's choices.
    pub fn replica_args(&self, node: usize, spec: &Path, rejoin: bool, extra: &[String]) -> Vec<OsString> {
        let me = &self.nodes[node];
        let resp: Vec<String> = self.nodes.iter().map(|node| node.resp.to_string()).collect();
        let mut args: Vec<OsString> = vec![
            "--bind".into(),
            me.resp.ip().to_string().into(),
            "--port".into(),
            me.resp.port().to_string().into(),
            "--cluster".into(),
            spec.into(),
            "--node".into(),
            node.to_string().into(),
            "--device".into(),
            me.device.clone().into(),
            "--resp".into(),
            resp.join(",").into(),
        ];
        if rejoin {
            args.push("--rejoin".into());
        }
        // usec-kv serves the KV unless told otherwise; saying nothing for it keeps the
        // launcher working with builds that have no --app.
        if self.app != App::Kv {
            args.extend(["--app".into(), self.app.name().into()]);
        }
        args.extend(extra.iter().map(OsString::from));
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|arg| arg.to_str().unwrap()).collect()
    }

    #[test]
    fn ports_from_a_base() {
        let ports = LocalPorts::from_base(7000, 3).unwrap();
        assert_eq!(
            ports,
            LocalPorts { front_door: 7000, resp: vec![7001, 7002, 7003], control: vec![7101, 7102, 7103] }
        );
        assert!(LocalPorts::from_base(65500, 3).is_err());
    }

    #[test]
    fn free_ports_all_differ() {
        let ports = LocalPorts::from_base(0, 3).unwrap();
        let mut all = vec![ports.front_door];
        all.extend(&ports.resp);
        all.extend(&ports.control);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn a_local_group_on_one_soft_fabric() {
        let ports = LocalPorts::from_base(7000, 2).unwrap();
        let plan = GroupPlan::local(App::Kv, "run-1", &ports);
        assert_eq!(
            plan.spec_text(),
            "cluster = usec-cluster\nrun = run-1\nnode 0 127.0.0.1:7101\nnode 1 127.0.0.1:7102\n"
        );
        let args = plan.replica_args(1, Path::new("/tmp/x/cluster"), false, &[]);
        assert_eq!(
            strings(&args),
            [
                "--bind",
                "127.0.0.1",
                "--port",
                "7002",
                "--cluster",
                "/tmp/x/cluster",
                "--node",
                "1",
                "--device",
                "soft:run-1",
                "--resp",
                "127.0.0.1:7001,127.0.0.1:7002"
            ]
        );
    }

    #[test]
    fn a_restart_rejoins_and_other_apps_are_named() {
        let ports = LocalPorts::from_base(7000, 3).unwrap();
        let plan = GroupPlan::local(App::Orderbook, "r", &ports);
        let extra = vec!["--heartbeat-us".to_string(), "100000".to_string()];
        let args = plan.replica_args(0, Path::new("c"), true, &extra);
        let args = strings(&args);
        let tail = &args[args.len() - 5..];
        assert_eq!(tail, ["--rejoin", "--app", "orderbook", "--heartbeat-us", "100000"]);
        let kv = GroupPlan::local(App::Kv, "r", &ports);
        assert!(!strings(&kv.replica_args(0, Path::new("c"), false, &[])).contains(&"--app"));
    }
}
