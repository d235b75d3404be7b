//! Stacks of this process, for every profiler in diag: capture (of the current thread on the
//! allocation path, of an interrupted thread from a signal handler), the table of loaded
//! modules, and resolving captured addresses to frames with bounded caches.
//!
//! The heap sampler ([`crate::heap`]), the CPU sampler ([`crate::cpu`]) and the blocking
//! watchdog (`tasks`) all capture through [`unwind`] and name through [`resolve`], so a frame
//! is named the same way in every profile. Reading names from files (ELF symbol tables,
//! DWARF) and the naming rules live one floor down in [`crate::symbolize`], which the CLI
//! uses too.

pub(crate) mod names;
pub(crate) mod process;
pub(crate) mod resolve;
pub(crate) mod unwind;

pub(crate) use resolve::stack as symbolize_stack;
pub(crate) use resolve::stacks as symbolize_stacks;
pub(crate) use resolve::stacks_whole as symbolize_stacks_whole;
#[cfg(target_os = "linux")]
pub(crate) use unwind::segment_of;
#[cfg(feature = "cpu")]
pub(crate) use unwind::walk as walk_stack;
#[cfg(feature = "cpu")]
pub(crate) use unwind::{
    capture_interrupted, capture_interrupted_partial, prepare_cpu_sampler, prepare_signals,
    prepare_thread, refresh_modules, refresh_stack_mappings,
};
