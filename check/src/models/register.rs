//! [`Register`]: one read/write register of integers with compare-and-set, starting at 0.

use serde::{Deserialize, Serialize};

use crate::model::Model;

/// A register operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Write a value.
    Write(u64),
    /// Write `new` if the value is `expected`.
    Cas {
        /// The value required.
        expected: u64,
        /// The value written.
        new: u64,
    },
}

/// Its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOutput {
    /// The value read.
    Value(u64),
    /// A write done.
    Ok,
    /// Whether a compare-and-set wrote.
    Swapped(bool),
}

/// The register model (one object: every operation has the same key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Register;

impl Model for Register {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = u64;
    type Key = ();

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, state: &u64, input: &RegisterInput) -> (u64, RegisterOutput) {
        match *input {
            RegisterInput::Read => (*state, RegisterOutput::Value(*state)),
            RegisterInput::Write(value) => (value, RegisterOutput::Ok),
            RegisterInput::Cas { expected, new } if expected == *state => {
                (new, RegisterOutput::Swapped(true))
            }
            RegisterInput::Cas { .. } => (*state, RegisterOutput::Swapped(false)),
        }
    }

    fn key(&self, _input: &RegisterInput) {}

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        matches!(input, RegisterInput::Read)
    }
}
