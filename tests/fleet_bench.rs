//! Benchmark, not a test (`scripts/bench` runs it with `--ignored`): the time of a deploy to a
//! fleet of 8 hosts with `parallel = 4` and with `parallel = 1`, against one host, in one run on
//! the same machine (issue #15: parallel = 4 within 2.5× of one host). Each host runs the
//! sample app with one instance (DESIGN.md §7, small fleets on 2 cores). Prints the figures
//! and the ratios; asserts only that every deploy succeeded.

mod support;

use std::time::Instant;

use support::fleet::Fleet;
use support::sha;

fn timed(f: &Fleet, hosts: &[String], extra: &str, commit: u32) -> f64 {
    f.write_config(hosts, extra);
    let t0 = Instant::now();
    f.deploy(&sha(commit)).expect(0);
    t0.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark: scripts/bench runs it"]
fn fleet_of_8_with_parallel_4_against_one_host() {
    let f = Fleet::new("bench", 8);
    let all = f.specs();
    let one = vec![all[0].clone()];
    // Warm: every host gets v1 (first deploys install nothing to reuse from).
    timed(&f, &all, "parallel = 8", 1);
    f.set_app("2.0.0");
    let single = timed(&f, &one, "", 2);
    f.set_app("3.0.0");
    let serial = timed(&f, &all, "parallel = 1", 3);
    f.set_app("4.0.0");
    let four = timed(&f, &all, "parallel = 4", 4);
    println!("BENCH fleet one-host deploy: {single:.2} s");
    println!(
        "BENCH fleet 8 hosts parallel=1: {serial:.2} s ({:.2}× one host)",
        serial / single
    );
    println!(
        "BENCH fleet 8 hosts parallel=4: {four:.2} s ({:.2}× one host; target ≤ 2.5×: {})",
        four / single,
        if four / single <= 2.5 { "met" } else { "NOT met" }
    );
}
