//! Processes for the tests: Debian's redis-server as the reference, usec-kv unreplicated or
//! as a group of replicas on the soft provider, and a raw RESP client.

#![allow(dead_code)] // each test file uses its part

pub mod orderbook;
pub mod script;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use usec_replication::apps::resp::reply;
use usec_replication::apps::resp::scan::reply_len;

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Fails with how to get a tool the test needs.
pub fn require(tool: &str) {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap().status.success();
    assert!(found, "{tool} is not installed: run tools/install-deps (Debian's redis-server and redis-tools)");
}

/// Whether something listens on `port`. A connection to itself does not count: with
/// nothing listening yet, Linux may pick `port` itself as the source port of a connect to
/// a loopback port in the ephemeral range, and the two ends meet (TCP simultaneous open).
/// That once made a test go on before its server listened, and the server then found its
/// port taken.
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|stream| stream.local_addr().ok().is_some_and(|local| local.port() != port))
}

/// Waits until something accepts connections on `port`.
pub fn wait_listening(port: u16, process: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listening(port) {
        assert!(process.0.try_wait().unwrap().is_none(), "the process on port {port} exited");
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Debian's redis-server: one database (as usec-kv has), nothing persisted.
pub fn redis_server() -> (Process, u16) {
    require("redis-server");
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no", "--databases", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = Process(child);
    wait_listening(port, &mut process);
    (process, port)
}

/// usec-kv, unreplicated.
pub fn kv_unreplicated() -> (Process, u16) {
    unreplicated(&[])
}

/// usec-kv, unreplicated, with `options` (`--app orderbook`).
pub fn unreplicated(options: &[&str]) -> (Process, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_usec-kv"))
        .args(["--port", &port.to_string()])
        .args(options)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = Process(child);
    wait_listening(port, &mut process);
    (process, port)
}

/// One group at a time per test binary: replicas that spin share the machine's cores,
/// and two groups at once on two cores starve each other's heartbeats.
static ONE_GROUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A group of usec-kv replicas, each a process, on a fresh soft fabric.
pub struct Group {
    _turn: std::sync::MutexGuard<'static, ()>,
    pub replicas: Vec<Process>,
    pub ports: Vec<u16>,
    pub fabric: String,
    /// What every replica was started with but its port and node id.
    options: Vec<String>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.replicas.clear();
        // The soft provider keeps each fabric under `$USEC_SOFT_DIR` (default
        // `/dev/shm/usec-soft`); its replicas are gone, so the directory is ours to remove.
        let _ = std::fs::remove_dir_all(format!("{}/{}", soft_dir(), self.fabric));
    }
}

impl Group {
    /// `n` replicas.
    pub fn start(name: &str, n: usize) -> Group {
        Group::start_with(name, n, &[])
    }

    /// `n` replicas started with `options` too (`--app orderbook`).
    pub fn start_with(name: &str, n: usize, options: &[&str]) -> Group {
        let turn = ONE_GROUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Ports are picked free, then bound by the replicas: another test of this binary
        // may take one in between. Such a start is retried on other ports.
        let mut why = String::new();
        for attempt in 0..3 {
            match Group::try_start(&format!("{name}-{attempt}"), n, options) {
                Ok((replicas, ports, fabric, options)) => {
                    return Group { _turn: turn, replicas, ports, fabric, options };
                }
                Err(error) => {
                    eprintln!("group {name}: start {attempt} failed, retried on other ports: {error}");
                    why = error;
                }
            }
        }
        panic!("group {name} did not start: {why}");
    }

    /// Starts the replicas; on failure, those started are killed as they drop.
    #[allow(clippy::type_complexity)]
    fn try_start(
        name: &str,
        n: usize,
        options: &[&str],
    ) -> Result<(Vec<Process>, Vec<u16>, String, Vec<String>), String> {
        let control: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let run = format!("{name}-{}", std::process::id());
        let mut spec = format!("cluster = kv-test\nrun = {run}\n");
        for (id, port) in control.iter().enumerate() {
            spec.push_str(&format!("node {id} 127.0.0.1:{port}\n"));
        }
        let dir = std::env::temp_dir().join(format!("usec-kv-{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let spec_path = dir.join("kv.cluster");
        std::fs::write(&spec_path, spec).unwrap();
        let fabric = format!("usec-kv-{run}");
        let resp: Vec<String> = ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        let mut common: Vec<String> = vec!["--cluster".into(), spec_path.display().to_string()];
        common.extend(["--device".into(), format!("soft:{fabric}"), "--resp".into(), resp.join(",")]);
        common.extend(["--log-slots", "256", "--snapshot-mib", "8"].map(String::from));
        // Three replicas, their front ends and the clients share two cores in CI: a replica
        // thread can wait tens of milliseconds for a core, which is not a failure (a
        // replica that exits is still detected at once).
        common.extend(["--heartbeat-us", "100000"].map(String::from));
        common.extend(options.iter().map(|option| option.to_string()));
        let mut replicas: Vec<Process> = (0..n).map(|id| spawn_replica(&ports, &common, id, false)).collect();
        for replica in &mut replicas {
            if let Err(why) = Group::wait_ready(replica) {
                drop(replicas);
                let _ = std::fs::remove_dir_all(format!("{}/{fabric}", soft_dir()));
                return Err(why);
            }
        }
        Ok((replicas, ports, fabric, common))
    }

    fn spawn(&self, id: usize, rejoin: bool) -> Process {
        spawn_replica(&self.ports, &self.options, id, rejoin)
    }

    /// Waits for a replica's `ready` line; why it did not come.
    fn wait_ready(replica: &mut Process) -> Result<(), String> {
        let mut line = String::new();
        BufReader::new(replica.0.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        if line.starts_with("ready") {
            return Ok(());
        }
        let status = replica.0.wait().map_or_else(|error| error.to_string(), |status| status.to_string());
        Err(format!("a replica did not start ({status}; its errors are on standard error above): {line:?}"))
    }

    /// Starts replica `id` again (after it was killed) as a replacement that lost its
    /// state (`--rejoin`); returns once it serves.
    pub fn restart(&mut self, id: usize) {
        self.try_restart(id).unwrap_or_else(|why| panic!("{why}"));
    }

    /// [`Group::restart`], saying why it failed instead of panicking (for a test that
    /// reports more with its failures).
    pub fn try_restart(&mut self, id: usize) -> Result<(), String> {
        // The old process, if still there, is killed as it drops.
        self.replicas[id] = self.spawn(id, true);
        Group::wait_ready(&mut self.replicas[id]).map_err(|why| format!("replica {id} restarted: {why}"))
    }

    /// The index of the replica that leads, once one does (by INFO; replicas that do not
    /// accept connections, killed ones, are passed over).
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (index, port) in self.ports.iter().enumerate() {
                let Some(mut client) = Client::try_connect(*port) else { continue };
                let info = String::from_utf8(client.request(&["INFO", "replication"])).unwrap();
                if info.contains("usec_role:leader") {
                    return index;
                }
            }
            assert!(Instant::now() < deadline, "no leader within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Where the soft provider keeps its fabrics.
fn soft_dir() -> String {
    std::env::var("USEC_SOFT_DIR").unwrap_or_else(|_| "/dev/shm/usec-soft".into())
}

/// Replica `id` of a group whose RESP ports are `ports`, started with `options`.
fn spawn_replica(ports: &[u16], options: &[String], id: usize, rejoin: bool) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_usec-kv"))
        .args(["--port", &ports[id].to_string(), "--node", &id.to_string()])
        .args(options)
        .args(rejoin.then_some("--rejoin"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    Process(child)
}

/// A raw RESP client.
pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).unwrap_or_else(|| panic!("nothing accepts connections on {port}"))
    }

    /// A client, if something accepts connections on `port`.
    pub fn try_connect(port: u16) -> Option<Client> {
        let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).ok()?;
        // Connected to itself (see `listening`): nothing is there.
        if stream.local_addr().ok()?.port() == port {
            return None;
        }
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Some(Client { stream, buffer: Vec::new() })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request as an array of bulks.
    pub fn send_request(&mut self, args: &[&str]) {
        let mut out = Vec::new();
        reply::request(&mut out, args.iter().map(|arg| arg.as_bytes()));
        self.send(&out);
    }

    /// Reads one reply.
    pub fn reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(len) = reply_len(&self.buffer).expect("a RESP reply") {
                return self.buffer.drain(..len).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = match self.stream.read(&mut chunk) {
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                result => result.expect("a reply in time"),
            };
            assert!(
                n > 0,
                "the server closed the connection; got {:?}",
                String::from_utf8_lossy(&self.buffer)
            );
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server closed the connection (after whatever it sent).
    pub fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(self.stream.read(&mut chunk), Ok(0))
    }

    pub fn request(&mut self, args: &[&str]) -> Vec<u8> {
        self.send_request(args);
        self.reply()
    }
}

/// Runs redis-cli with `args`: its standard output.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    require("redis-cli");
    let output = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}
