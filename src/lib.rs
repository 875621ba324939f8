//! `signgd`: ANN-to-SNN conversion with sign-gradient-descent (signGD) neuronal dynamics
//! (Oh & Lee, ICML 2024), simulated event by event.
//!
//! Data flows one way: ONNX file → [`model`] graph → [`convert`] passes → [`snn`] network →
//! [`engine`] → observations.

pub mod convert;
pub mod data;
pub mod engine;
pub mod feasibility;
pub mod memory;
pub mod model;
pub mod pipeline;
pub mod provenance;
pub mod real;
pub mod report;
pub mod runner;
pub mod shard;
pub mod snn;
pub mod stats;
pub mod theory;
pub mod tune;
