//! The governance body's register: verified organizations and researchers'
//! ethics training (`organizations`), and datasets with their DUO terms
//! (`datasets`). Applicants never declare what the register says.

mod datasets;
mod organizations;
pub use datasets::*;
pub use organizations::*;
