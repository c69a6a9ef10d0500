//! Criterion micro-benchmarks of the hot-path pieces (the `bench` binary has the
//! distributions and the baselines; these are for quick A/B work on one function):
//! `cargo bench -p bench --bench micro`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hermes_bench::frames;
use hermes_bench::stages::{parse::CountSink, serde_types};
use hermes_book::{parse_decimal, OrderBook, Price, Qty, Side};
use hermes_ingest::Decoder;

fn parse(c: &mut Criterion) {
    let set = frames::binance_depth20(2_000, 1000, 3);
    let bytes: usize = set[1..].iter().map(|f| f.data.len()).sum();
    let mut g = c.benchmark_group("parse_binance_depth20");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("hermes_decoder", |b| {
        b.iter(|| {
            let mut d = Decoder::default();
            let mut sink = CountSink::default();
            for f in &set {
                let _ = d.decode(&f.frame(f.recv_ts_ns), &mut sink);
            }
            black_box(sink.0)
        })
    });
    g.bench_function("serde_json_borrowed", |b| {
        b.iter(|| {
            for f in &set[1..] {
                black_box(serde_types::parse(f.class, &f.data));
            }
        })
    });
    g.finish();
}

fn decimal(c: &mut Criterion) {
    let v = [
        "61837.63000000",
        "0.02000000",
        "65083.66",
        "0.00583",
        "1925",
    ];
    let mut g = c.benchmark_group("decimal");
    g.bench_function("parse_decimal", |b| {
        b.iter(|| {
            for s in v {
                black_box(parse_decimal(black_box(s.as_bytes()), 8).ok());
            }
        })
    });
    g.bench_function("f64", |b| {
        b.iter(|| {
            for s in v {
                black_box(black_box(s).parse::<f64>().ok());
            }
        })
    });
    g.finish();
}

fn book(c: &mut Criterion) {
    let mut base = OrderBook::default();
    base.begin_snapshot();
    for d in 1..=1000 {
        base.set(Side::Bid, Price(100_000 - d), Qty(d));
        base.set(Side::Ask, Price(100_000 + d), Qty(d));
    }
    base.end_snapshot();
    c.bench_function("book_set_near_touch", |b| {
        let mut book = base.clone();
        let mut i = 0i64;
        b.iter(|| {
            i = (i + 7) % 20;
            book.set(Side::Bid, Price(99_999 - i), Qty(1 + i));
            black_box(book.best_bid())
        })
    });
}

// The macro defines an undocumented `pub fn benches`.
mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, parse, decimal, book);
}
use group::benches;
criterion_main!(benches);
