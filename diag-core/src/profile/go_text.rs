//! Go's legacy text heap format, served by `/debug/pprof/heap?debug=1`: a top list people can
//! read and that `go tool pprof` also parses.

use std::fmt::Write;

use super::model::Profile;

/// Renders a heap profile (Go's four sample types) as Go's `debug=1` text, heaviest in-use
/// stacks first. Profiles without those columns render as an explanatory header only.
pub fn heap_text(p: &Profile) -> String {
    let idx = |t: &str| p.sample_index(t);
    let (Some(ao), Some(asp), Some(io), Some(isp)) = (
        idx("alloc_objects"),
        idx("alloc_space"),
        idx("inuse_objects"),
        idx("inuse_space"),
    ) else {
        return "not a heap profile\n".to_owned();
    };
    let mut order: Vec<usize> = (0..p.samples.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((p.samples[i].values[isp], p.samples[i].values[asp])));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heap profile: {}: {} [{}: {}] @ heap/{}",
        p.total(io),
        p.total(isp),
        p.total(ao),
        p.total(asp),
        p.period
    );
    for i in order {
        let s = &p.samples[i];
        let addrs: Vec<String> = s
            .stack
            .iter()
            .map(|f| format!("{:#x}", f.address))
            .collect();
        let _ = writeln!(
            out,
            "{}: {} [{}: {}] @ {}",
            s.values[io],
            s.values[isp],
            s.values[ao],
            s.values[asp],
            addrs.join(" ")
        );
        for f in &s.stack {
            let _ = writeln!(
                out,
                "#\t{:#x}\t{}\t{}:{}",
                f.address,
                f.function,
                f.file.as_deref().unwrap_or("?"),
                f.line
            );
        }
        out.push('\n');
    }
    for c in &p.comments {
        let _ = writeln!(out, "# {c}");
    }
    out
}
