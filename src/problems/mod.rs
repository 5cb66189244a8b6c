//! The seed talk's reference problems (docs/math.md §4), ready to run.

pub mod grids;
pub mod mackey_glass;
pub mod nist;
pub mod pinn;
pub mod toys;
pub mod xor;
