//! Two processes, one RDMA connection: the client WRITEs a message into the server's
//! memory and READs back a buffer the server prepared, then both check the bytes.
//!
//! ```text
//! cargo run --example write_read -- soft:demo     # shared-memory provider, any machine
//! cargo run --example write_read -- rxe0          # SoftRoCE (e.g. inside tools/rxe-vm)
//! ```
//!
//! The client starts the server as a child process of the same executable (`--server`)
//! and they exchange endpoints and region descriptors as hex lines over the child's
//! stdin/stdout pipes. The server's CPU takes no part in the WRITE or the READ.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_regions::RemoteRegion;
use usec_verbs::{
    AccessFlags, Completion, CompletionQueue, ConnectOptions, Context, Endpoint, MemoryRegion, QpOptions,
    QueuePair, Region, RemoteAddr, SendWr, Status,
};

const REGION_BYTES: usize = 8192;
/// Where the client's message lands in the server's region.
const MESSAGE_OFFSET: usize = 0;
/// Where the server keeps the buffer the client reads.
const SOURCE_OFFSET: usize = 4096;
const SOURCE_BYTES: usize = 256;
const MESSAGE: &[u8] = b"hello over RDMA: this message was written into the server's memory";

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// What the server prepares for the client to read: a recognisable pattern.
fn source_pattern() -> Vec<u8> {
    (0..SOURCE_BYTES).map(|i| (i as u8).wrapping_mul(13).wrapping_add(7)).collect()
}

/// A device context with a PD, a CQ, one registered region and an RC QP.
struct Node {
    qp: QueuePair,
    cq: CompletionQueue,
    mr: MemoryRegion,
    region: Arc<Region>,
    ctx: Context,
}

impl Node {
    fn open(device: &str) -> AnyResult<Node> {
        let ctx = Context::open(device)?;
        let pd = ctx.alloc_pd()?;
        let cq = ctx.create_cq(16)?;
        let region = Arc::new(Region::new(REGION_BYTES)?);
        let mr = pd.register(&region, AccessFlags::all_remote())?;
        let qp = pd.create_qp(&cq, &cq, &QpOptions::default())?;
        Ok(Node { qp, cq, mr, region, ctx })
    }

    /// Waits for one completion and checks it succeeded.
    fn complete_one(&mut self) -> AnyResult<Completion> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut batch = [Completion::default(); 1];
        while self.cq.poll(&mut batch) == 0 {
            if Instant::now() > deadline {
                return Err("no completion within 10 s".into());
            }
            std::hint::spin_loop();
        }
        if batch[0].status != Status::Success {
            return Err(format!("work request {} failed: {}", batch[0].wr_id, batch[0].status).into());
        }
        Ok(batch[0])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> AnyResult<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return Err(format!("odd-length hex {text:?}").into());
    }
    (0..text.len()).step_by(2).map(|i| Ok(u8::from_str_radix(&text[i..i + 2], 16)?)).collect()
}

/// Reads one line `TAG [payload]` and returns the payload (empty when there is none).
fn expect_line(lines: &mut impl BufRead, tag: &str) -> AnyResult<String> {
    let mut line = String::new();
    if lines.read_line(&mut line)? == 0 {
        return Err(format!("the other process closed the pipe before sending {tag}").into());
    }
    let (word, payload) = line.trim_end().split_once(' ').unwrap_or((line.trim_end(), ""));
    if word != tag {
        return Err(format!("expected a {tag} line, got {line:?}").into());
    }
    Ok(payload.to_string())
}

/// The server: publishes its endpoint and region, connects, then lets the client work
/// on its memory and checks what was written.
fn serve(device: &str) -> AnyResult<()> {
    let mut node = Node::open(device)?;
    node.region.write(SOURCE_OFFSET, &source_pattern())?;
    let mut out = std::io::stdout().lock();
    let mut input = std::io::stdin().lock();
    writeln!(out, "ENDPOINT {}", node.qp.endpoint())?;
    writeln!(out, "REGION {}", hex(&node.mr.remote_region().to_bytes()))?;
    out.flush()?;
    let client: Endpoint = expect_line(&mut input, "ENDPOINT")?.parse()?;
    node.qp.connect(&client, &ConnectOptions::default())?;
    writeln!(out, "CONNECTED")?;
    out.flush()?;
    expect_line(&mut input, "CHECK")?;
    let mut landed = vec![0u8; MESSAGE.len()];
    node.region.read(MESSAGE_OFFSET, &mut landed)?;
    if landed == MESSAGE {
        writeln!(out, "VERDICT ok")?;
    } else {
        writeln!(out, "VERDICT bad {}", String::from_utf8_lossy(&landed))?;
    }
    out.flush()?;
    // Stay connected until the client is done with our memory.
    let _ = expect_line(&mut input, "DONE");
    drop(node.ctx);
    Ok(())
}

/// The server child process and its pipes.
struct Server {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Server {
    fn spawn(device: &str) -> AnyResult<Server> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([device, "--server"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let to = child.stdin.take().ok_or("no stdin pipe")?;
        let from = BufReader::new(child.stdout.take().ok_or("no stdout pipe")?);
        Ok(Server { child, to, from })
    }

    fn say(&mut self, line: &str) -> AnyResult<()> {
        writeln!(self.to, "{line}")?;
        Ok(self.to.flush()?)
    }
}

fn run_client(device: &str) -> AnyResult<()> {
    // The server first: no process is forked while this one has memory registered.
    let mut server = Server::spawn(device)?;
    let mut node = Node::open(device)?;
    let endpoint: Endpoint = expect_line(&mut server.from, "ENDPOINT")?.parse()?;
    let remote = RemoteRegion::from_bytes(&unhex(&expect_line(&mut server.from, "REGION")?)?)?;
    node.qp.connect(&endpoint, &ConnectOptions::default())?;
    server.say(&format!("ENDPOINT {}", node.qp.endpoint()))?;
    // Both sides must be connected before the first request goes out.
    expect_line(&mut server.from, "CONNECTED")?;

    // WRITE our message into the server's region.
    node.region.write(0, MESSAGE)?;
    let message = node.mr.sge(0, MESSAGE.len() as u32)?;
    let target = RemoteAddr::within(&remote, MESSAGE_OFFSET as u64, MESSAGE.len() as u64)?;
    let start = Instant::now();
    node.qp.post_send(&[SendWr::write(1, target, &message)])?;
    node.complete_one()?;
    let write_latency = start.elapsed();

    // READ the server's prepared buffer into ours.
    let into = node.mr.sge(SOURCE_OFFSET, SOURCE_BYTES as u32)?;
    let source = RemoteAddr::within(&remote, SOURCE_OFFSET as u64, SOURCE_BYTES as u64)?;
    let start = Instant::now();
    node.qp.post_send(&[SendWr::read(2, source, &into)])?;
    let read = node.complete_one()?;
    let read_latency = start.elapsed();
    let mut fetched = vec![0u8; SOURCE_BYTES];
    node.region.read(SOURCE_OFFSET, &mut fetched)?;
    if fetched != source_pattern() || read.byte_len as usize != SOURCE_BYTES {
        return Err(format!("READ brought back the wrong bytes ({} reported)", read.byte_len).into());
    }

    server.say("CHECK")?;
    let verdict = expect_line(&mut server.from, "VERDICT")?;
    server.say("DONE")?;
    let status = server.child.wait()?;
    if verdict != "ok" {
        return Err(format!("the server found the WRITE wrong: {verdict}").into());
    }
    if !status.success() {
        return Err(format!("the server exited with {status}").into());
    }
    println!("device      {} ({} provider)", node.ctx.name(), node.ctx.provider());
    println!(
        "WRITE       {:>5} bytes  {:>9.1?}  (landed in the server's memory: checked by the server)",
        MESSAGE.len(),
        write_latency
    );
    println!("READ        {:>5} bytes  {:>9.1?}  (matched the server's buffer)", SOURCE_BYTES, read_latency);
    println!("latencies are single operations, post to completion, of this build: not a benchmark");
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device =
        args.iter().find(|arg| !arg.starts_with("--")).cloned().unwrap_or_else(|| "soft:demo".into());
    let result = if args.iter().any(|arg| arg == "--server") { serve(&device) } else { run_client(&device) };
    if let Err(error) = result {
        let role = if args.iter().any(|arg| arg == "--server") { "server" } else { "client" };
        eprintln!("write_read ({role}, {device}): {error}");
        std::process::exit(1);
    }
}
