//! Step-size schedules η_t shared by every neuron, the encoder and the decoder.

use serde::{Deserialize, Serialize};

use super::NetworkError;

/// A step-size schedule, with t = 1, 2, … the simulation step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// `η_t = η0 γ^(t−1)`: the reference default (η0 = 0.15, γ = 0.95).
    Exponential {
        /// η0.
        eta0: f64,
        /// γ.
        gamma: f64,
    },
    /// `η_t = η0 / t`.
    Inverse {
        /// η0.
        eta0: f64,
    },
    /// `η_t = η0`.
    Constant {
        /// η0.
        eta0: f64,
    },
    /// `η_t = 1 / (t + 1)`: the IF neuron seen as a subgradient method (SPEC.md §1).
    IfMethod,
    /// An explicit table: `η_t = values[t − 1]`, defined for t ≤ its length.
    Table {
        /// The step sizes.
        values: Vec<f64>,
    },
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Exponential { eta0: 0.15, gamma: 0.95 }
    }
}

impl Schedule {
    /// Checks the parameters: positive finite step sizes, γ in (0, 1], a non-empty table.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let bad = |what: String| Err(NetworkError::Schedule(what));
        match self {
            Schedule::Exponential { eta0, gamma } => {
                if !(eta0.is_finite() && *eta0 > 0.0) {
                    return bad(format!("η0 must be positive and finite, got {eta0}"));
                }
                if !(gamma.is_finite() && *gamma > 0.0 && *gamma <= 1.0) {
                    return bad(format!("γ must lie in (0, 1], got {gamma}"));
                }
            }
            Schedule::Inverse { eta0 } | Schedule::Constant { eta0 } => {
                if !(eta0.is_finite() && *eta0 > 0.0) {
                    return bad(format!("η0 must be positive and finite, got {eta0}"));
                }
            }
            Schedule::IfMethod => {}
            Schedule::Table { values } => {
                if values.is_empty() {
                    return bad("the step-size table is empty: give at least one step".into());
                }
                if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
                    return bad(format!("step {} of the table is {v}; step sizes must be positive and finite", i + 1));
                }
            }
        }
        Ok(())
    }

    /// The last step the schedule defines (`None`: unbounded).
    pub fn max_steps(&self) -> Option<usize> {
        match self {
            Schedule::Table { values } => Some(values.len()),
            _ => None,
        }
    }

    /// The step sizes η_1..η_T, computed as the reference does (the exponential schedule by
    /// repeated multiplication, as a multiplicative learning-rate scheduler steps).
    pub fn steps(&self, steps: usize) -> Result<Vec<f64>, NetworkError> {
        self.validate()?;
        if let Some(max) = self.max_steps() {
            if steps > max {
                return Err(NetworkError::Schedule(format!("{steps} steps asked but the schedule defines only {max}")));
            }
        }
        let mut out = Vec::with_capacity(steps);
        match self {
            Schedule::Exponential { eta0, gamma } => {
                let mut eta = *eta0;
                for _ in 0..steps {
                    out.push(eta);
                    eta *= gamma;
                }
            }
            Schedule::Inverse { eta0 } => out.extend((1..=steps).map(|t| eta0 / t as f64)),
            Schedule::Constant { eta0 } => out.resize(steps, *eta0),
            Schedule::IfMethod => out.extend((1..=steps).map(|t| 1.0 / (t as f64 + 1.0))),
            Schedule::Table { values } => out.extend_from_slice(&values[..steps]),
        }
        Ok(out)
    }

    /// Parses `exp:ETA0:GAMMA`, `inverse:ETA0`, `constant:ETA0` or `if`.
    pub fn parse(text: &str) -> Result<Schedule, NetworkError> {
        let parts: Vec<&str> = text.split(':').collect();
        let num = |s: &str| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| NetworkError::Schedule(format!("`{s}` in schedule `{text}` is not a number")))
        };
        let schedule = match parts.as_slice() {
            ["exp", eta0, gamma] => Schedule::Exponential { eta0: num(eta0)?, gamma: num(gamma)? },
            ["inverse", eta0] => Schedule::Inverse { eta0: num(eta0)? },
            ["constant", eta0] => Schedule::Constant { eta0: num(eta0)? },
            ["if"] => Schedule::IfMethod,
            _ => {
                return Err(NetworkError::Schedule(format!(
                    "`{text}` is not a schedule; write exp:ETA0:GAMMA, inverse:ETA0, constant:ETA0 or if"
                )))
            }
        };
        schedule.validate()?;
        Ok(schedule)
    }
}
