//! SkyWalking's cross-process propagation: `sw8`, `sw8-correlation` and `sw8-x`.

mod base64;
mod carrier;
mod correlation;
mod sw8;
mod sw8x;

pub use carrier::{Extractor, Injector};
pub use correlation::Correlation;
pub(crate) use sw8::Sw8Parts;
pub use sw8::{SW8_MAX_LEN, Sw8Error, Sw8Header};
pub use sw8x::Sw8Extension;

/// The cross-process header's name. Never prefixed: since the Java agent 8.10 no current agent
/// reads a namespaced (`{namespace}-sw8`) header.
pub const SW8: &str = "sw8";
/// The correlation (baggage) header's name.
pub const SW8_CORRELATION: &str = "sw8-correlation";
/// The extension header's name.
pub const SW8_X: &str = "sw8-x";
