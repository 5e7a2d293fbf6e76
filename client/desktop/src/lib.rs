//! Ferry's desktop app: a window to drop a review session into, send it,
//! watch the transfers, and receive deliveries.
//!
//! - [`model`]: the view-model (the Send form, the Transfers rows,
//!   settings), pure and tested without a display;
//! - [`words`]: errors in words a producer acts on;
//! - [`worker`]: the background runtime that drives `ferry-client`, the
//!   same library as the `ferry` CLI, so nothing is implemented twice;
//! - [`ui`]: the egui window.

pub mod model;
pub mod ui;
pub mod words;
pub mod worker;

pub use ui::{FerryApp, Tab};
