//! Commands a front end answers itself, whatever the backend: about the connection
//! (PING, ECHO, QUIT, SELECT, HELLO, CLIENT, READONLY, READWRITE) and about the server
//! (COMMAND, INFO, CONFIG GET). Replies and errors as Redis 7.0 gives them; HELLO 3 is
//! refused with Redis's `-NOPROTO` (RESP3 is not spoken here) and a client that asked for
//! it stays on RESP2, as clients that fall back expect.

use crate::apps::kv::syntax::{c_string, lower_name, wrong_arity};
use crate::apps::resp::number::parse_i64;
use crate::apps::resp::{reply, Args};
use crate::apps::server::commands::Table;

/// The commands answered here (lower case).
pub const COMMANDS: &[&str] = &[
    "ping",
    "echo",
    "quit",
    "select",
    "hello",
    "client",
    "command",
    "info",
    "config",
    "readonly",
    "readwrite",
];

/// What a connection keeps about itself.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// The connection's id (CLIENT ID, HELLO).
    pub id: u64,
    /// CLIENT SETNAME's name.
    pub name: Option<Vec<u8>>,
    /// READONLY: reads may be served from this replica's state, possibly stale.
    pub readonly: bool,
    /// QUIT: close once the replies before it are out.
    pub quit: bool,
}

/// What the front end knows beyond the connection: for INFO and COMMAND.
pub trait InfoSource {
    /// Appends the `# Replication` section's lines (`role:…\r\n` and so on).
    fn replication(&self, out: &mut String);
    /// Appends the `# Keyspace` section's lines.
    fn keyspace(&self, out: &mut String);
    /// Connected clients.
    fn clients(&self) -> usize;
    /// The port clients connect to.
    fn port(&self) -> u16;
    /// The commands served, for COMMAND.
    fn commands(&self) -> &Table;
}

/// Whether command `name` is answered here.
pub fn handles(name: &[u8]) -> bool {
    COMMANDS.iter().any(|command| command.as_bytes().eq_ignore_ascii_case(name))
}

/// Answers `args` if it is one of [`COMMANDS`]; false if not.
pub fn answer(args: Args<'_>, session: &mut Session, server: &dyn InfoSource, out: &mut Vec<u8>) -> bool {
    let mut buffer = [0u8; 24];
    let Some(len) = lower_name(args.get(0), &mut buffer) else { return false };
    let name = std::str::from_utf8(&buffer[..len]).unwrap_or("");
    let argc = args.len();
    match name {
        "ping" => match argc {
            1 => out.extend_from_slice(b"+PONG\r\n"),
            2 => reply::bulk(out, args.get(1)),
            _ => wrong_arity(out, "ping"),
        },
        "echo" if argc == 2 => reply::bulk(out, args.get(1)),
        "echo" => wrong_arity(out, "echo"),
        "quit" => {
            session.quit = true;
            out.extend_from_slice(reply::OK);
        }
        "select" if argc != 2 => wrong_arity(out, "select"),
        "select" => match parse_i64(args.get(1)) {
            Some(0) => out.extend_from_slice(reply::OK),
            Some(index) if i32::try_from(index).is_ok() => reply::error(out, "ERR DB index is out of range"),
            _ => reply::error(out, "ERR value is not an integer or out of range"),
        },
        "hello" => hello(args, session, out),
        "client" => client(args, session, out),
        "command" => command(args, server.commands(), out),
        "info" => info(args, server, out),
        "config" => config(args, out),
        "readonly" | "readwrite" if argc != 1 => wrong_arity(out, name),
        "readonly" | "readwrite" => {
            session.readonly = name == "readonly";
            out.extend_from_slice(reply::OK);
        }
        _ => return false,
    }
    true
}

/// Redis's rule for client names: no byte outside `!`..=`~`.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&byte| (b'!'..=b'~').contains(&byte))
}

fn hello(args: Args<'_>, session: &mut Session, out: &mut Vec<u8>) {
    let mut next = 1;
    if args.len() >= 2 {
        next = 2;
        match parse_i64(args.get(1)) {
            None => return reply::error(out, "ERR Protocol version is not an integer or out of range"),
            Some(2) => {}
            // RESP3 (and anything else) is not spoken here: Redis's own refusal.
            Some(_) => return reply::error(out, "NOPROTO unsupported protocol version"),
        }
    }
    let mut name = None;
    let mut index = next;
    while index < args.len() {
        let more = args.len() - 1 - index;
        let option = args.get(index);
        if option.eq_ignore_ascii_case(b"auth") && more >= 2 {
            // No users or passwords here: any credentials are accepted, as Redis's
            // default user without a password accepts them.
            index += 2;
        } else if option.eq_ignore_ascii_case(b"setname") && more >= 1 {
            name = Some(args.get(index + 1));
            index += 1;
        } else {
            let mut text = b"ERR Syntax error in HELLO option '".to_vec();
            text.extend_from_slice(c_string(option));
            text.push(b'\'');
            return reply::error(out, text);
        }
        index += 1;
    }
    if let Some(name) = name {
        if !valid_name(name) {
            return reply::error(
                out,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        session.name = (!name.is_empty()).then(|| name.to_vec());
    }
    reply::array(out, 14);
    for (key, value) in [("server", "redis"), ("version", "7.0.15")] {
        reply::bulk(out, key.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
    reply::bulk(out, b"proto");
    reply::integer(out, 2);
    reply::bulk(out, b"id");
    reply::integer(out, session.id as i64);
    for (key, value) in [("mode", "standalone"), ("role", "master")] {
        reply::bulk(out, key.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
    reply::bulk(out, b"modules");
    reply::array(out, 0);
}

/// `-ERR unknown subcommand 'x'. Try NAME HELP.`
fn unknown_subcommand(out: &mut Vec<u8>, sub: &[u8], container: &str) {
    let sub = c_string(sub);
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(&sub[..sub.len().min(128)]);
    text.extend_from_slice(format!("'. Try {container} HELP.").as_bytes());
    reply::error(out, text);
}

fn client(args: Args<'_>, session: &mut Session, out: &mut Vec<u8>) {
    if args.len() < 2 {
        return wrong_arity(out, "client");
    }
    let sub = args.get(1);
    let is = |word: &str| sub.eq_ignore_ascii_case(word.as_bytes());
    if is("setname") {
        if args.len() != 3 {
            return wrong_arity(out, "client|setname");
        }
        let name = args.get(2);
        if !valid_name(name) {
            return reply::error(
                out,
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        session.name = (!name.is_empty()).then(|| name.to_vec());
        out.extend_from_slice(reply::OK);
    } else if is("getname") {
        if args.len() != 2 {
            return wrong_arity(out, "client|getname");
        }
        reply::bulk_or_null(out, session.name.as_deref());
    } else if is("id") {
        if args.len() != 2 {
            return wrong_arity(out, "client|id");
        }
        reply::integer(out, session.id as i64);
    } else {
        unknown_subcommand(out, sub, "CLIENT");
    }
}

fn command(args: Args<'_>, commands: &Table, out: &mut Vec<u8>) {
    if args.len() == 1 {
        return commands.info(out, std::iter::empty());
    }
    let sub = args.get(1);
    let is = |word: &str| sub.eq_ignore_ascii_case(word.as_bytes());
    let rest: Vec<&[u8]> = args.iter_from(2).collect();
    if is("count") {
        if args.len() != 2 {
            return wrong_arity(out, "command|count");
        }
        commands.count(out);
    } else if is("info") {
        commands.info(out, rest.into_iter());
    } else if is("docs") {
        commands.docs(out, rest.into_iter());
    } else if is("list") {
        commands.list(out);
    } else {
        unknown_subcommand(out, sub, "COMMAND");
    }
}

fn config(args: Args<'_>, out: &mut Vec<u8>) {
    if args.len() < 2 {
        return wrong_arity(out, "config");
    }
    let sub = args.get(1);
    if !sub.eq_ignore_ascii_case(b"get") {
        return unknown_subcommand(out, sub, "CONFIG");
    }
    if args.len() < 3 {
        return wrong_arity(out, "config|get");
    }
    // What redis-benchmark asks for; nothing is persisted here.
    const SETTINGS: &[(&str, &str)] = &[("save", ""), ("appendonly", "no"), ("databases", "1")];
    let mut found: Vec<(&str, &str)> = Vec::new();
    for pattern in args.iter_from(2) {
        for &(name, value) in SETTINGS {
            let lower = pattern.to_ascii_lowercase();
            if crate::apps::kv::glob::matches(&lower, name.as_bytes())
                && !found.iter().any(|(seen, _)| *seen == name)
            {
                found.push((name, value));
            }
        }
    }
    reply::array(out, found.len() * 2);
    for (name, value) in found {
        reply::bulk(out, name.as_bytes());
        reply::bulk(out, value.as_bytes());
    }
}

fn info(args: Args<'_>, server: &dyn InfoSource, out: &mut Vec<u8>) {
    let wanted = |section: &str| {
        args.len() == 1
            || args.iter_from(1).any(|arg| {
                arg.eq_ignore_ascii_case(section.as_bytes())
                    || [&b"all"[..], b"default", b"everything"]
                        .iter()
                        .any(|all| arg.eq_ignore_ascii_case(all))
            })
    };
    let mut text = String::new();
    let mut section = |title: &str, body: &dyn Fn(&mut String)| {
        if wanted(&title.to_ascii_lowercase()) {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            text.push_str(&format!("# {title}\r\n"));
            body(&mut text);
        }
    };
    section("Server", &|text| {
        text.push_str("redis_version:7.0.15\r\nusec_kv_version:");
        text.push_str(env!("CARGO_PKG_VERSION"));
        text.push_str(&format!(
            "\r\nredis_mode:standalone\r\nos:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\n",
            std::env::consts::OS,
            std::process::id(),
            server.port()
        ));
    });
    section("Clients", &|text| text.push_str(&format!("connected_clients:{}\r\n", server.clients())));
    section("Replication", &|text| server.replication(text));
    section("Keyspace", &|text| server.keyspace(text));
    reply::bulk(out, text.as_bytes());
}
