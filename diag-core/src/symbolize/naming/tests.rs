#[test]
fn module_paths_from_source_files() {
    use super::module_of_file as m;
    let rustc = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
    assert_eq!(
        m(&format!("{rustc}/core/src/slice/mod.rs")).unwrap(),
        "core::slice"
    );
    assert_eq!(
        m(&format!("{rustc}/alloc/src/raw_vec/mod.rs")).unwrap(),
        "alloc::raw_vec"
    );
    assert_eq!(
        m(&format!("{rustc}/alloc/src/alloc.rs")).unwrap(),
        "alloc::alloc"
    );
    assert_eq!(m(&format!("{rustc}/std/src/lib.rs")).unwrap(), "std");
    assert_eq!(
        m("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.48.0/src/runtime/task/core.rs").unwrap(),
        "tokio::runtime::task::core"
    );
    assert_eq!(
        m("/home/u/.cargo/registry/src/idx/backtrace-0.3.77/src/backtrace/libunwind.rs").unwrap(),
        "backtrace::backtrace::libunwind"
    );
    assert_eq!(
        m("diag-core/src/heap/unwind/mod.rs").unwrap(),
        "diag_core::heap::unwind"
    );
    assert_eq!(
        m("/work/main/diag-core/src/heap/alloc.rs").unwrap(),
        "diag_core::heap::alloc"
    );
    assert_eq!(m("myapp/src/main.rs").unwrap(), "myapp");
    assert_eq!(m("myapp/src/bin/load-gen.rs").unwrap(), "load_gen");
    assert_eq!(m("myapp/src/cache/mod.rs").unwrap(), "myapp::cache");
    assert_eq!(m("src/main.rs"), None);
    assert_eq!(m("/usr/include/stdio.h"), None);
    assert_eq!(m("build/out.c"), None);
}

#[test]
fn symbol_names_match_short_names_by_last_segment() {
    use super::same_function as same;
    assert!(same(
        "remember_request",
        "diag_examples::leaky::remember_request"
    ));
    assert!(same(
        "with_capacity_in<u8, alloc::alloc::Global>",
        "alloc::vec::Vec<T,A>::with_capacity_in"
    ));
    assert!(same("clone", "<myapp::Foo as core::clone::Clone>::clone"));
    assert!(same("parse", "myapp::parse::<u8>"));
    assert!(!same("insert", "myapp::cache::remove"));
    // Closure and coroutine bodies: any body matches any body, never a named function.
    assert!(same("{closure#0}", "myapp::run::{{closure}}"));
    assert!(same("{closure#1}", "myapp::run::{closure#1}"));
    assert!(same(
        "{async_block#0}<fn() -> u8, u8>",
        "<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}"
    ));
    assert!(same("{async_fn#0}", "myapp::leak::{closure#0}::<u8>"));
    assert!(!same("{closure#0}", "myapp::run"));
    assert!(!same("run", "myapp::run::{{closure}}"));
    assert!(!same("{closure#0}", "{{closure}}"));
    // A symbol without a path says nothing more than the short name.
    assert!(!same("malloc", "malloc"));
    assert!(!same("", "a::b"));
}

/// A symbol table given as a list of names, and a name for the function at each address.
struct Table {
    at: Vec<(usize, &'static str)>,
    functions: Vec<&'static str>,
}

impl super::SymbolTable for Table {
    fn function_at(&self, addr: usize) -> Option<String> {
        self.at
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, n)| (*n).to_owned())
    }

    fn functions_where(
        &self,
        _addr: usize,
        keep: &dyn Fn(&[&str]) -> bool,
        limit: usize,
    ) -> Vec<String> {
        self.functions
            .iter()
            .filter(|f| {
                let segs: Vec<&str> = f.split("::").collect();
                keep(&segs)
            })
            .take(limit)
            .map(|f| (*f).to_owned())
            .collect()
    }
}

fn sym(name: &str, file: &str) -> super::RawSymbol {
    super::RawSymbol {
        name: Some(name.to_owned()),
        file: Some(file.to_owned()),
        line: 7,
    }
}

const REG: &str = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";

/// `debug = "line-tables-only"`: short names, crate names from the symbol table, never
/// from the package's directory (`svc/` holds the crate `my_service`).
#[test]
fn line_tables_only_names_take_their_paths_from_evidence() {
    let table = Table {
        at: vec![(0x100, "my_service::main::{{closure}}")],
        functions: vec![
            "my_service::main",
            "my_service::leaks::Registry::remember",
            "my_service::leaks::plain_vec",
            "other_crate::leaks::plain_vec_helper",
        ],
    };
    let mut namer = super::Namer::default();
    let frames = namer.frames(
        0x100,
        &[
            sym("__rust_alloc", "/work/svc/src/main.rs"),
            sym("remember", "/work/svc/src/leaks.rs"),
            sym("plain_vec", "/work/svc/src/leaks.rs"),
            sym("copy_from_slice", &format!("{REG}/bytes-1.11.0/src/bytes.rs")),
            sym(
                "{async_fn#0}",
                "/work/svc/src/handlers/mod.rs",
            ),
            sym(
                "{async_block#0}<fn() -> my_service::handlers::upload::{async_fn_env#0}, ((),), ()>",
                &format!("{REG}/axum-0.8.9/src/handler/mod.rs"),
            ),
            sym("{async_fn#0}", "/work/svc/src/main.rs"),
        ],
        &table,
    );
    let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(
        names,
        [
            // The shim: the binary's crate (its `main`), still a shim to site attribution.
            "my_service::__rust_alloc",
            // A method inlined away: the symbol table's one function of that module and name.
            "my_service::leaks::Registry::remember",
            "my_service::leaks::plain_vec",
            // A dependency's: its module from its registry path.
            "bytes::bytes::copy_from_slice",
            // An async body: its enclosing function from the frame it was inlined into.
            "my_service::handlers::upload::{async_fn#0}",
            "axum::handler::{async_block#0}<fn() -> my_service::handlers::upload::{async_fn_env#0}, ((),), ()>",
            // The outermost frame: the symbol table's name.
            "my_service::main::{{closure}}",
        ]
    );
    assert!(crate::profile::sites::is_allocator_shim(names[0]));
    // What was learned holds for later addresses: no lookup needed for this one.
    let empty = Table {
        at: Vec::new(),
        functions: Vec::new(),
    };
    let frames = namer.frames(
        0x200,
        &[
            sym("helper<u8>", "/work/svc/src/leaks.rs"),
            sym("malloc", "./malloc/malloc.c"),
        ],
        &empty,
    );
    assert_eq!(frames[0].function, "my_service::leaks::helper<u8>");
    assert_eq!(frames[1].function, "malloc");
}

/// Without any evidence the package directory's name is the last resort; full names and
/// C functions stay as they are.
#[test]
fn without_evidence_the_directory_names_the_crate() {
    let empty = Table {
        at: Vec::new(),
        functions: Vec::new(),
    };
    let mut namer = super::Namer::default();
    let frames = namer.frames(
        0x100,
        &[
            sym("insert", "/work/app/myapp/src/cache.rs"),
            sym("myapp::cache::fill", "/work/app/myapp/src/cache.rs"),
            sym(
                "<myapp::Foo as core::clone::Clone>::clone",
                "/work/app/myapp/src/lib.rs",
            ),
            super::RawSymbol {
                name: Some("clone3".into()),
                file: None,
                line: 0,
            },
        ],
        &empty,
    );
    let names: Vec<&str> = frames.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(
        names,
        [
            "myapp::cache::insert",
            "myapp::cache::fill",
            "<myapp::Foo as core::clone::Clone>::clone",
            "clone3"
        ]
    );
}

#[test]
fn body_paths_need_the_files_module() {
    use super::{Source, enclosing_path};
    let src = Source::of("/w/svc/src/api.rs").unwrap();
    let outer = ["poll<other::api2::get::{async_fn_env#0}, x::api::get::{async_fn_env#0}>"];
    assert_eq!(
        enclosing_path("{async_fn#0}", outer.into_iter(), &src).as_deref(),
        Some("x::api::get::{async_fn#0}")
    );
    // Another kind or index of body is another body.
    assert_eq!(
        enclosing_path("{async_fn#1}", outer.into_iter(), &src),
        None
    );
    assert_eq!(enclosing_path("{closure#0}", outer.into_iter(), &src), None);
    assert_eq!(enclosing_path("get", outer.into_iter(), &src), None);
}
