//! Stacks, for every profiler in diag: capture (of the current thread on the allocation
//! path, of an interrupted thread from a signal handler), the table of loaded modules, and
//! symbolization (addresses to function names, files, lines and inlined frames).
//!
//! The heap sampler ([`crate::heap`]), the CPU sampler ([`crate::cpu`]) and the blocking
//! watchdog (`tasks`) all capture through [`unwind`] and symbolize through [`symbolize_stack`]
//! / [`symbols`], so a frame is named the same way in every profile.

#[cfg(target_os = "linux")]
mod dwarf;
#[cfg(target_os = "linux")]
mod mapped;
mod process;
pub(crate) mod symbolize;
pub(crate) mod symbols;
#[cfg(target_os = "linux")]
pub(crate) mod symtab;
pub(crate) mod unwind;

pub(crate) use symbolize::stack as symbolize_stack;
pub(crate) use symbolize::stacks as symbolize_stacks;
pub(crate) use symbolize::stacks_whole as symbolize_stacks_whole;
#[cfg(target_os = "linux")]
pub(crate) use unwind::segment_of;
#[cfg(feature = "cpu")]
pub(crate) use unwind::walk as walk_stack;
#[cfg(feature = "cpu")]
pub(crate) use unwind::{
    capture_interrupted, capture_interrupted_partial, prepare_cpu_sampler, prepare_signals,
    prepare_thread, refresh_modules, refresh_stack_mappings,
};
