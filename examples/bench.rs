//! Runs the bench client until `wschat bench` is wired into main.rs:
//! `cargo run --release --example bench -- fanout --help`.

fn main() {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = wschat::bench::run_from_args(&args) {
        eprintln!("wschat bench: {e}");
        std::process::exit(2);
    }
}
