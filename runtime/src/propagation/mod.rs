//! SkyWalking's cross-process propagation: `sw8`, `sw8-correlation` and `sw8-x`.

mod carrier;
mod correlation;
mod sw8;
mod sw8x;

pub use carrier::{Extractor, Injector};
pub use correlation::Correlation;
pub(crate) use sw8::Sw8Parts;
pub use sw8::{SW8_MAX_LEN, Sw8Error, Sw8Header};
pub use sw8x::Sw8Extension;
