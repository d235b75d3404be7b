//! The JSON the debug endpoints answer, as types: the service serializes them, the `diag`
//! command (and anyone else) deserializes them.
//!
//! Always compiled (serde only, no runtime parts), so a client that builds `diag-core` with
//! `default-features = false` reads the same types the server writes.
//!
//! | endpoint | type |
//! |---|---|
//! | `GET /debug/tasks` | [`Tasks`] |
//! | `GET /debug/heap/stats` | [`HeapStats`] |
//! | `GET /debug/heap/history` | [`HeapHistory`] |
//!
//! The field names are the contract (a test compares every field name the endpoints answer
//! with a fixed list). Structs are `#[non_exhaustive]`: fields may be added, never renamed or
//! removed. Deserializing is lenient: a field an older service does not send takes its
//! default, and fields a newer one adds are ignored.
//!
//! ```
//! let body = r#"{"interval_ms": 60000, "max_points": 60, "points": [{"time_nanos": 1}]}"#;
//! let h: diag_core::wire::HeapHistory = serde_json::from_str(body).unwrap();
//! assert_eq!(h.stats.interval_ms, 60_000);
//! assert_eq!(h.points[0].time_nanos, 1);
//! ```

mod heap;
mod tasks;

pub use heap::{HeapHistory, HeapStats, HistoryPoint, HistoryStats, UnwindStats};
pub use tasks::{BlockingEvent, BlockingSite, Lag, RuntimeHealth, TaskHealth, Tasks, Watchdog};
