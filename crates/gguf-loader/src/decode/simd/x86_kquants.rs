//! (to be written)

use super::Kernels;
use crate::format::GgmlType;

pub fn kernels(_ty: GgmlType) -> Kernels {
    Kernels::default()
}
