#[path = "watchdog_bench.rs"]
mod watchdog_bench;
#[test]
fn run() {
    let mut md = String::new();
    watchdog_bench::run(&mut md);
    println!("{md}");
}
