//! The inverse-scaling task suite as data: declarative task files, readers for every published
//! data format, validation with precise diagnostics, and locating data on disk or on the hub.

pub mod dataset;
pub mod describe;
pub mod diag;
pub mod docs;
pub mod lm_eval_yaml;
pub mod locate;
pub mod pylit;
pub mod read;
pub mod readme;
pub mod registry;
pub mod spec;
pub mod template;

pub use dataset::{DataError, Dataset, load};
pub use docs::{DocBody, Document, Request};
pub use locate::{DataOptions, NotFound, Origin, locate};
pub use registry::Registry;
pub use spec::TaskSpec;
