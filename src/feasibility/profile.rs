//! Hardware profiles: the limits of one neuromorphic chip, loaded from JSON and checked.
//!
//! The bundled profiles live in `hardware/` at the top of the repository and are embedded into
//! the binary, so they work from any directory. A user profile has the same fields; every field
//! must be present (limits that a chip does not have are written as `null`), and every limit
//! must be a positive whole number.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The bundled profiles, in the order `--target all` reports them: (target name, JSON text).
pub const BUNDLED: [(&str, &str); 6] = [
    ("loihi", include_str!("../../hardware/loihi.json")),
    ("loihi2", include_str!("../../hardware/loihi2.json")),
    ("truenorth", include_str!("../../hardware/truenorth.json")),
    ("spinnaker", include_str!("../../hardware/spinnaker.json")),
    ("spinnaker2", include_str!("../../hardware/spinnaker2.json")),
    ("speck", include_str!("../../hardware/speck.json")),
];

/// A profile that cannot be used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProfileError {
    /// The text is not JSON of the expected form.
    #[error("{origin}: not a valid hardware profile: {problem}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// What is wrong.
        problem: String,
    },
    /// A field is missing, unknown or out of range.
    #[error("{origin}: field `{field}`: {problem}")]
    Field {
        /// Where the text came from.
        origin: String,
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// No bundled profile has this name.
    #[error(
        "unknown target `{0}`; choose one of loihi, loihi2, truenorth, spinnaker, spinnaker2, speck or all, or pass --profile FILE"
    )]
    UnknownTarget(String),
}

/// Whether spikes are single bits or carry a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeKind {
    /// One bit per spike.
    Binary,
    /// A spike carries an integer payload.
    Graded,
}

/// How (whether) a neuron with two operands can be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwoOperand {
    /// Not at all.
    None,
    /// From two compartments joined in a dendritic tree: costs two compartments per neuron.
    MultiCompartment,
    /// The neuron model holds two inputs itself: costs one neuron.
    Native,
}

/// How synaptic memory is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryModel {
    /// Every synapse of the neurons on a core takes `bits_per_synapse`.
    PerSynapse,
    /// Only stored weights count (a convolution kernel once, shared over positions).
    PerStoredWeight,
    /// sinabs's rule for DYNAP-CNN chips (Speck): one convolutional layer per core, kernel
    /// memory `c_in · 2^(⌈log2(kx·ky)⌉ + ⌈log2 c_out⌉)` entries, neuron memory
    /// `c_out · 2^(⌈log2 H⌉ + ⌈log2 W⌉)` entries, one bias entry per output channel; pooling is
    /// a sum inside the layer's core (max pooling is not supported).
    Sinabs,
    /// nengo-loihi's accounting (`SynapseConfig.bits_per_axon`): per input axon, its weights in
    /// groups of 64, each weight with its index bits, each group with a 10-bit header, rounded up
    /// to 64-bit words; a convolution's kernel stored once per core (`axon_to_weight_map`).
    NengoLoihi,
    /// Synapses (`bits_per_synapse` each) and neuron state (`state_bits` per neuron) share one
    /// memory of `synaptic_memory_bytes_per_core`.
    SharedWithState,
}

/// The limits of one chip. See `hardware/*.json` for the sources of the bundled values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name (the `--target` value).
    pub name: String,
    /// Full chip name.
    pub chip: String,
    /// Paper or datasheet the numbers come from.
    pub source: String,
    /// How the numbers were read into this profile.
    pub notes: String,
    /// Neurons (compartments) per core.
    pub neurons_per_core: u64,
    /// Per-core neuron capacity when cores differ (one entry per core of a chip).
    pub core_neurons: Option<Vec<u64>>,
    /// Distinct source neurons (input axons) a core can receive from; `null`: not limited.
    pub input_axons_per_core: Option<u64>,
    /// Output axons per core (one per source neuron and destination core); `null`: not limited.
    pub output_axons_per_core: Option<u64>,
    /// Synaptic memory per core, in bytes.
    pub synaptic_memory_bytes_per_core: u64,
    /// Per-core synaptic memory when cores differ (one entry per core of a chip).
    pub core_synaptic_memory_bytes: Option<Vec<u64>>,
    /// Bits of synaptic memory one synapse (or stored weight) takes.
    pub bits_per_synapse: u64,
    /// What synaptic memory counts.
    pub memory_model: MemoryModel,
    /// Cores per chip.
    pub cores_per_chip: u64,
    /// Largest number of chips that can work together; `null`: not limited.
    pub max_chips: Option<u64>,
    /// Destination cores one neuron can send to; `null`: not limited.
    pub max_destination_cores_per_neuron: Option<u64>,
    /// Destination cores one core can send to; `null`: not limited.
    pub max_destination_cores_per_core: Option<u64>,
    /// Whether one population may be spread over several cores.
    pub split_populations: bool,
    /// Weight precision in bits.
    pub weight_bits: u64,
    /// Neuron state precision in bits.
    pub state_bits: u64,
    /// Binary or graded spikes.
    pub spikes: SpikeKind,
    /// Whether two-operand neurons can be built, and how.
    pub two_operand_neurons: TwoOperand,
    /// Whether the chip can receive real-valued (multi-bit) inputs, e.g. the float encoder's.
    pub real_valued_input: bool,
    /// Whether a neuron can apply a drive (and synaptic scale) that changes every step with η_t.
    pub per_step_drive: bool,
    /// Whether neuron updates are programmable (any spike function, e.g. exp, products).
    pub programmable_neurons: bool,
    /// Bias entries per core (one per output channel of the layer it holds); may be omitted.
    #[serde(default)]
    pub bias_entries_per_core: Option<u64>,
    /// Largest kernel side of a convolution; may be omitted.
    #[serde(default)]
    pub max_kernel_size: Option<u64>,
    /// The convolution strides the chip supports; may be omitted (any).
    #[serde(default)]
    pub strides: Option<Vec<u64>>,
    /// Largest number of input or output channels of a layer; may be omitted.
    #[serde(default)]
    pub max_channels: Option<u64>,
    /// Distinct weights one neuron can apply (TrueNorth: 4 axon types); may be omitted.
    #[serde(default)]
    pub distinct_weights_per_neuron: Option<u64>,
    /// Synaptic events one core can process per millisecond step (SpiNNaker's CPU budget);
    /// may be omitted.
    #[serde(default)]
    pub synaptic_events_per_ms_per_core: Option<u64>,
}

const FIELDS: [&str; 24] = [
    "name",
    "chip",
    "source",
    "notes",
    "neurons_per_core",
    "core_neurons",
    "input_axons_per_core",
    "output_axons_per_core",
    "synaptic_memory_bytes_per_core",
    "core_synaptic_memory_bytes",
    "bits_per_synapse",
    "memory_model",
    "cores_per_chip",
    "max_chips",
    "max_destination_cores_per_neuron",
    "max_destination_cores_per_core",
    "split_populations",
    "weight_bits",
    "state_bits",
    "spikes",
    "two_operand_neurons",
    "real_valued_input",
    "per_step_drive",
    "programmable_neurons",
];

/// Fields that may be omitted (they default to `null`).
const OPTIONAL_FIELDS: [&str; 6] = [
    "bias_entries_per_core",
    "max_kernel_size",
    "strides",
    "max_channels",
    "distinct_weights_per_neuron",
    "synaptic_events_per_ms_per_core",
];

/// Fields that hold a limit: a positive whole number (or `null` where allowed).
const LIMITS: [&str; 16] = [
    "bias_entries_per_core",
    "max_kernel_size",
    "max_channels",
    "distinct_weights_per_neuron",
    "synaptic_events_per_ms_per_core",
    "neurons_per_core",
    "input_axons_per_core",
    "output_axons_per_core",
    "synaptic_memory_bytes_per_core",
    "bits_per_synapse",
    "cores_per_chip",
    "max_chips",
    "max_destination_cores_per_neuron",
    "max_destination_cores_per_core",
    "weight_bits",
    "state_bits",
];

impl Profile {
    /// Parses and checks a profile; `origin` names the text in messages (a file name).
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let parse = |problem: String| ProfileError::Parse { origin: origin.to_string(), problem };
        let field = |field: &str, problem: String| ProfileError::Field {
            origin: origin.to_string(),
            field: field.to_string(),
            problem,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| parse(e.to_string()))?;
        let object = value.as_object().ok_or_else(|| parse("expected a JSON object of limits".into()))?;
        for name in FIELDS {
            if !object.contains_key(name) {
                return Err(field(name, "missing (write `null` for a limit the chip does not have)".into()));
            }
        }
        let known = |k: &str| FIELDS.contains(&k) || OPTIONAL_FIELDS.contains(&k);
        if let Some(unknown) = object.keys().find(|k| !known(k.as_str())) {
            return Err(field(
                unknown,
                format!(
                    "unknown field; the fields are {}, and optionally {}",
                    FIELDS.join(", "),
                    OPTIONAL_FIELDS.join(", ")
                ),
            ));
        }
        let null = serde_json::Value::Null;
        // Limits: positive whole numbers, checked on the raw JSON so that -1 or 0.5 get a
        // message about the limit rather than about types.
        for name in LIMITS {
            let v = object.get(name).unwrap_or(&null);
            if v.is_null()
                && !matches!(
                    name,
                    "neurons_per_core"
                        | "synaptic_memory_bytes_per_core"
                        | "bits_per_synapse"
                        | "cores_per_chip"
                        | "weight_bits"
                        | "state_bits"
                )
            {
                continue;
            }
            check_positive(v).map_err(|p| field(name, p))?;
        }
        for name in ["core_neurons", "core_synaptic_memory_bytes", "strides"] {
            match object.get(name).unwrap_or(&null) {
                serde_json::Value::Null => {}
                serde_json::Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        check_positive(v).map_err(|p| field(name, format!("entry {i}: {p}")))?;
                    }
                }
                _ => return Err(field(name, "expected null or a list of positive whole numbers".into())),
            }
        }
        let profile: Profile = serde_json::from_value(value).map_err(|e| parse(e.to_string()))?;
        for (name, list) in [
            ("core_neurons", &profile.core_neurons),
            ("core_synaptic_memory_bytes", &profile.core_synaptic_memory_bytes),
        ] {
            if let Some(list) = list {
                if list.len() as u64 != profile.cores_per_chip {
                    return Err(field(
                        name,
                        format!("lists {} cores, but cores_per_chip is {}", list.len(), profile.cores_per_chip),
                    ));
                }
            }
        }
        if profile.weight_bits < 2 {
            return Err(field("weight_bits", "signed weights need at least 2 bits".into()));
        }
        if profile.name.trim().is_empty() {
            return Err(field("name", "empty".into()));
        }
        Ok(profile)
    }

    /// A bundled profile by target name.
    pub fn bundled(name: &str) -> Result<Profile, ProfileError> {
        let (_, text) = BUNDLED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| ProfileError::UnknownTarget(name.to_string()))?;
        Profile::parse(text, &format!("hardware/{}.json", name.to_ascii_lowercase()))
    }

    /// Every bundled profile.
    pub fn all_bundled() -> Result<Vec<Profile>, ProfileError> {
        BUNDLED.iter().map(|(n, _)| Profile::bundled(n)).collect()
    }

    /// Neuron capacity of core `k` of a chip.
    pub fn core_neuron_capacity(&self, k: usize) -> u64 {
        self.core_neurons.as_ref().and_then(|l| l.get(k).copied()).unwrap_or(self.neurons_per_core)
    }

    /// Synaptic memory of core `k` of a chip, in bytes.
    pub fn core_memory_bytes(&self, k: usize) -> u64 {
        self.core_synaptic_memory_bytes
            .as_ref()
            .and_then(|l| l.get(k).copied())
            .unwrap_or(self.synaptic_memory_bytes_per_core)
    }

    /// The largest neuron capacity of any core.
    pub fn max_core_neurons(&self) -> u64 {
        self.core_neurons.as_ref().and_then(|l| l.iter().max().copied()).unwrap_or(self.neurons_per_core)
    }

    /// The largest synaptic memory of any core, in bytes.
    pub fn max_core_memory_bytes(&self) -> u64 {
        self.core_synaptic_memory_bytes
            .as_ref()
            .and_then(|l| l.iter().max().copied())
            .unwrap_or(self.synaptic_memory_bytes_per_core)
    }

    /// Synapses (or stored weights) that fit in `bytes` of synaptic memory.
    pub fn synapses_in(&self, bytes: u64) -> u64 {
        bytes.saturating_mul(8) / self.bits_per_synapse
    }
}

fn check_positive(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(0) => Err("is 0; a limit must be a positive whole number".into()),
            Some(_) => Ok(()),
            None => Err(format!("is {n}; a limit must be a positive whole number")),
        },
        serde_json::Value::Null => Err("is null; this limit is required (a positive whole number)".into()),
        other => Err(format!("is {other}; a limit must be a positive whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_profiles_load() {
        let all = Profile::all_bundled().unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5].core_neuron_capacity(3), 32768);
    }
}
