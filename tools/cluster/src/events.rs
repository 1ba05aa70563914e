//! What the launcher's main loop waits for: a stopping signal, a console line, or the end
//! of its standard input — one channel, so the loop never blocks on any one of them.

use std::io::BufRead;
use std::sync::mpsc::{channel, Receiver};

use nix::sys::signal::Signal;

use crate::signals;

/// Something that happened outside the main loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// SIGINT, SIGTERM or SIGHUP arrived.
    Signal(Signal),
    /// A line was typed on the console.
    Line(String),
    /// Standard input ended: there will be no more lines (the group goes on).
    StdinClosed,
}

/// Starts the threads that report signals and, with `console`, standard input's lines.
pub fn listen(console: bool) -> Receiver<Event> {
    let (sender, receiver) = channel();
    let signals = sender.clone();
    signals::forward(move |signal| {
        let _ = signals.send(Event::Signal(signal));
    });
    if console {
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if sender.send(Event::Line(line)).is_err() {
                        return;
                    }
                }
                let _ = sender.send(Event::StdinClosed);
            })
            .expect("spawning the console thread");
    }
    receiver
}
