//! Support shared by the integration tests.

pub(crate) mod moto;
pub(crate) mod synthetic;
