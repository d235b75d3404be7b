//! A service with one CPU-bound endpoint and cheap ones, to find a hot path with a CPU profile.
//!
//! - `GET /burn?n=N` runs [`burn_cpu`] (default N = 200000, at most 10000000) on the request's
//!   worker thread: the hot path.
//! - `GET /ping` answers `pong`: cheap.
//! - `GET /hello` formats a short greeting: cheap.

use axum::Router;
use axum::extract::Query;
use axum::routing::get;

#[derive(serde::Deserialize)]
struct BurnParams {
    n: Option<u64>,
}

/// The hot function: counts the primes below `n` by trial division and mixes them into a
/// checksum, so the work depends on every step and cannot be optimised away.
#[inline(never)]
pub fn burn_cpu(n: u64) -> u64 {
    let mut count = 0u64;
    let mut mix = 0xcbf2_9ce4_8422_2325u64;
    for candidate in 2..std::hint::black_box(n) {
        let mut d = 2;
        let mut prime = true;
        while d * d <= candidate {
            if candidate % d == 0 {
                prime = false;
                break;
            }
            d += 1;
        }
        if prime {
            count += 1;
            mix = (mix ^ candidate).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    std::hint::black_box(count ^ (mix & 0xffff_0000_0000_0000))
}

async fn burn(Query(p): Query<BurnParams>) -> String {
    let n = p.n.unwrap_or(200_000).clamp(2, 10_000_000);
    format!("{}\n", burn_cpu(n))
}

async fn ping() -> &'static str {
    "pong\n"
}

async fn hello() -> String {
    format!("hello from pid {}\n", std::process::id())
}

/// The service's routes.
pub fn app() -> Router {
    Router::new()
        .route("/burn", get(burn))
        .route("/ping", get(ping))
        .route("/hello", get(hello))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_counts_primes() {
        // 25 primes below 100; the top bits carry the checksum.
        assert_eq!(burn_cpu(100) & 0xffff, 25);
        assert_eq!(burn_cpu(2) & 0xffff, 0);
    }
}
