//! Packaging alone, for `scripts/bench`: `package_bench <dir> <out_dir>` builds the release
//! package of `<dir>` exactly as a deploy does and prints one JSON line (seconds, bytes, sha256).
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: package_bench <dir> <out_dir>");
        std::process::exit(2);
    };
    let started = Instant::now();
    match tj_deploy::package::build(Path::new(dir), &[], Path::new(out), "bench.tar.gz", &|_| {}) {
        Ok(p) => println!(
            "{{\"seconds\":{:.3},\"size\":{},\"files\":{},\"input_bytes\":{},\"sha256\":\"{}\"}}",
            started.elapsed().as_secs_f64(),
            p.size,
            p.files,
            p.input_bytes,
            p.sha256
        ),
        Err(e) => {
            eprintln!("error: {}", e.message);
            std::process::exit(1);
        }
    }
}
