//! [`Counterexample`]: why a key's operations have no linearization, in terms a person
//! can follow.

use std::borrow::Cow;
use std::fmt;

use crate::history::Operation;
use crate::model::Model;

use super::search::Frontier;

/// Linearized operations shown at most (the latest ones).
const SHOWN_LINEARIZED: usize = 20;
/// Characters shown at most of one input, answer or state: the middle of a longer one is
/// left out (an appended-to value can be kilobytes, and twenty states of it would bury
/// the explanation). The fields keep the whole text.
const SHOWN_CHARS: usize = 160;

/// `text`, or its ends with how much was left out between them.
fn shortened(text: &str) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= SHOWN_CHARS {
        return Cow::Borrowed(text);
    }
    let keep = SHOWN_CHARS / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(count - keep).collect();
    Cow::Owned(format!("{head}…({} characters left out)…{tail}", count - 2 * keep))
}

/// One operation as a counterexample shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationView {
    /// Its index in the history checked.
    pub index: usize,
    /// Who issued it.
    pub client: u64,
    /// What was asked.
    pub input: String,
    /// What was answered, if the answer came within the part of the history shown.
    pub output: Option<String>,
    /// When it was invoked, from the key's first invocation.
    pub invoke_ns: u64,
    /// When it was answered, from the key's first invocation.
    pub return_ns: Option<u64>,
}

impl fmt::Display for OperationView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let output = shortened(self.output.as_deref().unwrap_or("?"));
        let returned = self.return_ns.map_or(String::from("no answer"), |at| format!("{at} ns"));
        write!(
            f,
            "#{} client {}: {} -> {}  [{} ns .. {}]",
            self.index,
            self.client,
            shortened(&self.input),
            output,
            self.invoke_ns,
            returned
        )
    }
}

/// An operation that could have gone next where the best attempt stopped, and why it
/// did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The operation.
    pub operation: OperationView,
    /// What the model answers to it in that state.
    pub model_output: String,
    /// Whether that is the answer observed (or none was): then it fit, but every order
    /// it led to failed later.
    pub fits: bool,
}

/// Why one key's operations have no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The key, as `Debug` writes it.
    pub key: String,
    /// Operations on that key.
    pub operations: usize,
    /// Events (invocations and responses) of the key in the shortest prefix that has no
    /// linearization already, and the operation whose response ends it; `None` when not
    /// explained (or the budget ran out first).
    pub prefix: Option<(usize, OperationView)>,
    /// The longest order of that prefix's operations the search found, with the state
    /// after each.
    pub linearized: Vec<(OperationView, String)>,
    /// The operations that could have gone next at that point.
    pub candidates: Vec<Candidate>,
    /// The operation whose response came before any candidate could go.
    pub blocking: Option<OperationView>,
}

impl Counterexample {
    /// A counterexample that names the key only.
    pub(crate) fn bare(key: impl fmt::Debug, operations: usize) -> Self {
        Counterexample {
            key: format!("{key:?}"),
            operations,
            prefix: None,
            linearized: Vec::new(),
            candidates: Vec::new(),
            blocking: None,
        }
    }

    /// Fills in the explanation from the shortest failing prefix (its `events`, with
    /// `indices` mapping search items to history indices) and the search's frontier on it.
    pub(crate) fn explain<M: Model>(
        &mut self,
        model: &M,
        history: &[Operation<M::Input, M::Output>],
        events: &[(usize, bool)],
        indices: &[usize],
        frontier: Option<Frontier<M::State>>,
    ) {
        let origin = events.first().map_or(0, |&(index, _)| history[index].invoke_ns);
        let answered: std::collections::HashSet<usize> =
            events.iter().filter(|(_, is_response)| *is_response).map(|&(index, _)| index).collect();
        let view = |index: usize| {
            let operation = &history[index];
            let shown = answered.contains(&index);
            OperationView {
                index,
                client: operation.client,
                input: format!("{:?}", operation.input),
                output: operation.output().filter(|_| shown).map(|output| format!("{output:?}")),
                invoke_ns: operation.invoke_ns - origin,
                return_ns: operation.return_ns().filter(|_| shown).map(|at| at - origin),
            }
        };
        if let Some(&(last, _)) = events.last() {
            self.prefix = Some((events.len(), view(last)));
        }
        let Some(frontier) = frontier else { return };
        let state = frontier.linearized.last().map_or_else(|| model.init(), |(_, state)| state.clone());
        self.linearized = frontier
            .linearized
            .iter()
            .map(|(item, state)| (view(indices[*item]), format!("{state:?}")))
            .collect();
        self.candidates = frontier
            .candidates
            .iter()
            .map(|&item| {
                let index = indices[item];
                let (_, output) = model.step(&state, &history[index].input);
                let fits = !answered.contains(&index) || history[index].output() == Some(&output);
                Candidate { operation: view(index), model_output: format!("{output:?}"), fits }
            })
            .collect();
        self.blocking = Some(view(indices[frontier.blocking]));
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not linearizable: key {} ({} operations)", self.key, self.operations)?;
        let Some((events, last)) = &self.prefix else {
            return writeln!(f, "(no explanation asked for, or the budget ran out before one was found)");
        };
        writeln!(
            f,
            "already not linearizable after the first {events} events of the key, ending with the answer to"
        )?;
        writeln!(f, "  {last}")?;
        if self.blocking.is_none() {
            return Ok(());
        }
        if self.linearized.is_empty() {
            writeln!(f, "no operation can go first:")?;
        } else {
            let count = self.linearized.len();
            writeln!(
                f,
                "the longest order found has {count} operations; the last ones, with the state after each:"
            )?;
        }
        if self.linearized.len() > SHOWN_LINEARIZED {
            writeln!(f, "  ... {} earlier", self.linearized.len() - SHOWN_LINEARIZED)?;
        }
        for (operation, state) in self.linearized.iter().rev().take(SHOWN_LINEARIZED).rev() {
            writeln!(f, "  {operation}\n      state {}", shortened(state))?;
        }
        if !self.linearized.is_empty() {
            writeln!(f, "then none of these can go next:")?;
        }
        for candidate in &self.candidates {
            let why = if candidate.fits {
                "fits here, but every order after it fails".to_string()
            } else {
                format!("the model answers {}", shortened(&candidate.model_output))
            };
            writeln!(f, "  {}\n      {why}", candidate.operation)?;
        }
        if let Some(blocking) = &self.blocking {
            writeln!(f, "and #{} was answered before any of them could go.", blocking.index)?;
        }
        Ok(())
    }
}
