//! The seed talk's reference problems (MATH.md §4), ready to run.

pub mod pinn;
pub mod toys;
