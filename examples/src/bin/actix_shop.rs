//! The actix-web example service (see `diag_examples::actix_shop`), built with
//! `--features actix`.
//!
//! Usage: `actix_shop [--ab] [APP_ADDR]` (default 127.0.0.1:8080). diag's listener follows
//! `DIAG_ADDR` (default 127.0.0.1:6060). Both addresses are printed on stdout once bound.
//! Exits 2 on a bad configuration or address, 1 if serving fails.

#[global_allocator]
static ALLOC: diag_core::DiagAlloc = diag_core::DiagAlloc::system();

fn main() {
    let diag = match diag_core::init() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("actix_shop: diag: {e}");
            std::process::exit(2);
        }
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--ab`: the A/B server of benches/scripts/layer_instructions.sh.
    let ab = args.first().is_some_and(|a| a == "--ab");
    if ab {
        args.remove(0);
    }
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listener = match std::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("actix_shop: cannot bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    if let Ok(a) = listener.local_addr() {
        println!("app listening on http://{a}");
    }
    if let Some(a) = diag.local_addr() {
        println!("diag listening on http://{a}");
    }
    let served = actix_web::rt::System::new().block_on(async move {
        if ab {
            diag_examples::actix_shop::ab_server(listener)?.await
        } else {
            diag_examples::actix_shop::server(listener, 2)?.await
        }
    });
    if let Err(e) = served {
        eprintln!("actix_shop: {e}");
        std::process::exit(1);
    }
}
