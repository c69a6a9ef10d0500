//! Decodes the Binance depth20 stream a few times: a steady workload for profilers
//! (`valgrind --tool=callgrind`, `perf record`).
use hermes_bench::{frames, stages::parse::CountSink};
use hermes_ingest::Decoder;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let set = frames::binance_depth20(n, 1000, 3);
    let mut total = 0;
    for _ in 0..3 {
        let mut d = Decoder::default();
        let mut sink = CountSink::default();
        for f in &set {
            let _ = d.decode(&f.frame(f.recv_ts_ns), &mut sink);
        }
        total += sink.0;
    }
    println!("{total}");
}
