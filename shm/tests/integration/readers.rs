//! The foreign-language readers against regions written by [`ShmWriter`]: the C example
//! (`shm/examples/c/reader.c`, built on `shm/include/hermes_shm.h`) and the Python reader
//! (`shm/python/hermes_shm.py`) must print exactly the expected lines, refuse files they
//! do not understand, and tell the writer's state.
//!
//! Tests that need `cc`, `c++` or `python3` ask [`require`] for it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hermes_shm::layout::header;
use hermes_shm::{
    ShmWriter, SlotKernels, TopOfBook, Venue, WriterOptions, FLAG_BBO_FROM_TICKER, FLAG_CROSSED,
    FLAG_HAS_ASK, FLAG_HAS_BID, FLAG_HAS_DERIVS, FLAG_STALE,
};

use crate::common::{crate_path, require, TempDir};

/// Compiles a C program against the header with warnings as errors, or returns `None`
/// when there is no `cc` (see [`require`]).
fn compile_c(src: &Path, out: &Path) -> Option<PathBuf> {
    if !require("cc", "a C program built on include/hermes_shm.h") {
        return None;
    }
    let res = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I"])
        .arg(crate_path("include"))
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .expect("run cc");
    assert!(
        res.status.success(),
        "cc failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    Some(out.to_path_buf())
}

/// The Python interpreter, or `None` when there is none (see [`require`]).
fn python() -> Option<&'static str> {
    require("python3", "the Python reader python/hermes_shm.py").then_some("python3")
}

fn stdout_lines(out: &Output, what: &str) -> Vec<String> {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8 output");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{what}: output must end with a newline: {text:?}"
    );
    text.lines().map(str::to_string).collect()
}

fn assert_lines(got: &[String], want: &[String], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: line {} differs", i + 1);
    }
    assert_eq!(got.len(), want.len(), "{what}: line count; got {got:#?}");
}

/// The region every reader test prints, with the lines the readers must produce.
struct Fixture {
    path: PathBuf,
    /// Kept alive so the region stays "alive" (not closed) while the readers run.
    _writer: ShmWriter,
    c_lines: Vec<String>,
    json_lines: Vec<String>,
    /// What [`C_KERNELS`] and [`PY_KERNELS`] print.
    kernel_lines: Vec<String>,
}

/// Fills every level with values that must never be printed, so a reader that ignores
/// `level_counts` is caught.
fn junk_levels(t: &mut TopOfBook) {
    for i in 0..10 {
        t.bids[i] = (-999_000 - i as i64, -999);
        t.asks[i] = (999_000 + i as i64, 999);
    }
}

fn fixture(dir: &TempDir) -> Fixture {
    let path = dir.join("region");
    let mut w = ShmWriter::create(
        &path,
        WriterOptions {
            slots: 10,
            group_readable: false,
            replace_foreign: false,
        },
    )
    .unwrap();

    // 1. Coinbase, 2 price / 8 size decimals, both sides, trailing zeros to drop.
    let btc_usd = w.add_instrument(Venue::Coinbase, "BTC-USD", 2, 8).unwrap();
    let mut t = TopOfBook {
        update_id: 123_456_789,
        exch_ts_ns: 1_700_000_000_000_000_000,
        recv_ts_ns: 1_700_000_000_000_100_000,
        publish_ts_ns: 1_700_000_000_000_200_000,
        updates: 42,
        flags: FLAG_HAS_BID | FLAG_HAS_ASK,
        bid_px: 6_183_763,
        bid_qty: 150_000_000,
        ask_px: 6_183_800,
        ask_qty: 1,
        bid_levels: 3,
        ask_levels: 2,
        last_trade_px: 6_183_780,
        last_trade_qty: 5,
        last_trade_ts_ns: 1_699_999_999_999_000_000,
        last_trade_side: 1,
        trades: 7,
        // Some kernels valid, some not (their words must read as "none").
        kernels: SlotKernels {
            time_ns: 1_700_000_000_000_100_000,
            price_decimals: 4,
            spread_ticks: Some(37),
            spread_bps_x100: Some(598),
            mid_px: Some(618_378_150),
            microprice_px: Some(618_376_300),
            bid_depth: 2_650_000_100,
            ask_depth: 12_345_678_902,
            imbalance_ppm: Some(-646_432),
            vwap_buy_px: None,
            vwap_sell_px: Some(618_370_001),
            volatility_bps: Some(12.5),
            trade_buy_qty: 5,
            trade_sell_qty: 0,
            trade_imbalance_ppm: Some(1_000_000),
            ofi_window: -42,
            ofi_total: i64::MIN,
            updates_per_s_x100: 12_345,
            levels: 5,
            vwap_qty: 100_000_000,
            vol_half_life_ns: 30_000_000_000,
            trade_window_ns: 5_000_000_000,
            rate_window_ns: 1_000_000_000,
        },
        ..TopOfBook::default()
    };
    junk_levels(&mut t);
    t.bids[0] = (6_183_763, 150_000_000);
    t.bids[1] = (6_183_700, 2_500_000_000);
    t.bids[2] = (6_183_650, 100);
    t.asks[0] = (6_183_800, 1);
    t.asks[1] = (6_184_000, 12_345_678_901);
    w.publish(btc_usd, &t);

    // 2. Binance, 8/8 decimals, empty ask side (its words hold junk), best bid from the
    //    ticker so it differs from bids[0], the largest update id.
    let eth_usdt = w.add_instrument(Venue::Binance, "ETHUSDT", 8, 8).unwrap();
    let mut t = TopOfBook {
        update_id: u64::MAX,
        updates: 1,
        flags: FLAG_HAS_BID | FLAG_BBO_FROM_TICKER,
        bid_px: 345_678_000_000,
        bid_qty: 1_000_000_000,
        ask_px: 777,
        ask_qty: 778,
        bid_levels: 1,
        ask_levels: 0,
        ..TopOfBook::default()
    };
    junk_levels(&mut t);
    t.bids[0] = (345_670_000_000, 50_000_000);
    w.publish(eth_usdt, &t);

    // 3. Webhook, 4/0 decimals, stale and crossed, negative and zero values, i64 extremes.
    let spread = w
        .add_instrument(Venue::Webhook, "SPREAD-BTC/ETH", 4, 0)
        .unwrap();
    let mut t = TopOfBook {
        update_id: 0,
        updates: 3,
        flags: FLAG_STALE | FLAG_CROSSED | FLAG_HAS_BID | FLAG_HAS_ASK,
        bid_px: -12_345,
        bid_qty: 0,
        ask_px: -5,
        ask_qty: 7,
        bid_levels: 2,
        ask_levels: 1,
        ..TopOfBook::default()
    };
    junk_levels(&mut t);
    t.bids[0] = (-12_345, 0);
    t.bids[1] = (i64::MIN, i64::MAX);
    t.asks[0] = (-5, 7);
    w.publish(spread, &t);

    // 4. Registered but never published: an all-zero slot.
    w.add_instrument(Venue::Coinbase, "ETH-USD", 2, 8).unwrap();

    // 5. Binance, 0 price / 18 size decimals, full depth, published twice (the last wins).
    let btc_usdt = w.add_instrument(Venue::Binance, "BTCUSDT", 0, 18).unwrap();
    let mut t = TopOfBook {
        update_id: 98,
        updates: 1,
        flags: FLAG_HAS_BID,
        bid_px: 1,
        bid_qty: 1,
        bid_levels: 1,
        ..TopOfBook::default()
    };
    w.publish(btc_usdt, &t);
    t.update_id = 99;
    t.updates = 2;
    t.flags = FLAG_HAS_BID | FLAG_HAS_ASK;
    t.bid_px = 61_837;
    t.bid_qty = 1;
    t.ask_px = 61_838;
    t.ask_qty = 100_000_000_000_000_000;
    t.bid_levels = 10;
    t.ask_levels = 10;
    for i in 0..10 {
        t.bids[i] = (61_837 - i as i64, i as i64 + 1);
        t.asks[i] = (61_838 + i as i64, 100_000_000_000_000_000 * (i as i64 + 1));
    }
    w.publish(btc_usdt, &t);

    // 6. Binance USD-M, 1/3 decimals: a perpetual with mark, index, funding and two
    //    liquidations (the derivatives are at 8 decimals whatever the instrument's).
    let perp = w
        .add_instrument(Venue::BinanceUsdm, "BTCUSDT", 1, 3)
        .unwrap();
    let mut t = TopOfBook {
        update_id: 9,
        updates: 4,
        flags: FLAG_HAS_BID | FLAG_HAS_ASK | FLAG_HAS_DERIVS,
        bid_px: 618_501,
        bid_qty: 2_500,
        ask_px: 618_502,
        ask_qty: 100,
        bid_levels: 1,
        ask_levels: 1,
        mark_px: 6_185_012_000_000,
        index_px: 6_184_990_050_000,
        funding_rate: 10_000,
        next_funding_ns: 1_723_104_000_000_000_000,
        derivs_ts_ns: 1_723_100_000_123_000_000,
        liquidations: 2,
        ..TopOfBook::default()
    };
    junk_levels(&mut t);
    t.bids[0] = (618_501, 2_500);
    t.asks[0] = (618_502, 100);
    w.publish(perp, &t);

    // 7. Binance COIN-M, stale, no sides, negative funding, no index, no next funding,
    //    the most negative mark.
    let coinm = w
        .add_instrument(Venue::BinanceCoinm, "BTCUSD_PERP", 1, 0)
        .unwrap();
    let t = TopOfBook {
        update_id: 5,
        updates: 1,
        flags: FLAG_STALE | FLAG_HAS_DERIVS,
        mark_px: i64::MIN,
        funding_rate: -37_500,
        derivs_ts_ns: 1,
        ..TopOfBook::default()
    };
    w.publish(coinm, &t);

    // 8. Coinbase Exchange: derivatives words hold junk but the flag is clear, so no
    //    reader may show them.
    let cbx = w
        .add_instrument(Venue::CoinbaseExchange, "ETH-USD", 2, 8)
        .unwrap();
    let mut t = TopOfBook {
        update_id: 1_234,
        updates: 2,
        flags: FLAG_HAS_BID | FLAG_HAS_ASK,
        bid_px: 345_678,
        bid_qty: 100_000_000,
        ask_px: 345_679,
        ask_qty: 50_000_000,
        bid_levels: 1,
        ask_levels: 1,
        mark_px: 777,
        index_px: 778,
        funding_rate: 779,
        next_funding_ns: 780,
        derivs_ts_ns: 0,
        ..TopOfBook::default()
    };
    t.bids[0] = (345_678, 100_000_000);
    t.asks[0] = (345_679, 50_000_000);
    w.publish(cbx, &t);

    // 9. Binance USD-M: a liquidation before any mark price update (count, no derivs).
    let liq = w
        .add_instrument(Venue::BinanceUsdm, "ETHUSDT", 2, 3)
        .unwrap();
    let t = TopOfBook {
        update_id: 3,
        updates: 1,
        liquidations: 1,
        ..TopOfBook::default()
    };
    w.publish(liq, &t);
    w.heartbeat();

    let c_lines = [
        "coinbase BTC-USD 61837.63 1.5 61838 0.00000001 123456789 42 false",
        "binance ETHUSDT 3456.78 10 - - 18446744073709551615 1 false",
        "webhook SPREAD-BTC/ETH -1.2345 0 -0.0005 7 0 3 true",
        "coinbase ETH-USD - - - - 0 0 false",
        "binance BTCUSDT 61837 0.000000000000000001 61838 0.1 99 2 false",
        "binance-usdm BTCUSDT 61850.1 2.5 61850.2 0.1 9 4 false mark 61850.12 index 61849.9005 \
         funding 0.0001 next_funding_ns 1723104000000000000 liquidations 2",
        "binance-coinm BTCUSD_PERP - - - - 5 1 true mark -92233720368.54775808 index 0 \
         funding -0.000375 next_funding_ns 0",
        "coinbase-exchange ETH-USD 3456.78 1 3456.79 0.5 1234 2 false",
        "binance-usdm ETHUSDT - - - - 3 1 false liquidations 1",
    ]
    .map(String::from)
    .to_vec();

    let deep_bids: Vec<String> = (0..10)
        .map(|i| format!(r#"["{}","0.0000000000000000{:02}"]"#, 61_837 - i, i + 1))
        .map(|s| s.replace("0.000000000000000010", "0.00000000000000001"))
        .collect();
    let deep_asks: Vec<String> = (0..10)
        .map(|i| match i {
            9 => r#"["61847","1"]"#.to_string(),
            _ => format!(r#"["{}","0.{}"]"#, 61_838 + i, i + 1),
        })
        .collect();
    let json_lines = vec![
        concat!(
            r#"{"venue":"coinbase","symbol":"BTC-USD","bid_px":"61837.63","bid_qty":"1.5","#,
            r#""ask_px":"61838","ask_qty":"0.00000001","#,
            r#""bids":[["61837.63","1.5"],["61837","25"],["61836.5","0.000001"]],"#,
            r#""asks":[["61838","0.00000001"],["61840","123.45678901"]],"#,
            r#""seq":123456789,"updates":42,"stale":false}"#
        )
        .to_string(),
        concat!(
            r#"{"venue":"binance","symbol":"ETHUSDT","bid_px":"3456.78","bid_qty":"10","#,
            r#""ask_px":null,"ask_qty":null,"bids":[["3456.7","0.5"]],"asks":[],"#,
            r#""seq":18446744073709551615,"updates":1,"stale":false}"#
        )
        .to_string(),
        concat!(
            r#"{"venue":"webhook","symbol":"SPREAD-BTC/ETH","bid_px":"-1.2345","bid_qty":"0","#,
            r#""ask_px":"-0.0005","ask_qty":"7","#,
            r#""bids":[["-1.2345","0"],["-922337203685477.5808","9223372036854775807"]],"#,
            r#""asks":[["-0.0005","7"]],"seq":0,"updates":3,"stale":true}"#
        )
        .to_string(),
        concat!(
            r#"{"venue":"coinbase","symbol":"ETH-USD","bid_px":null,"bid_qty":null,"#,
            r#""ask_px":null,"ask_qty":null,"bids":[],"asks":[],"seq":0,"updates":0,"#,
            r#""stale":false}"#
        )
        .to_string(),
        format!(
            concat!(
                r#"{{"venue":"binance","symbol":"BTCUSDT","bid_px":"61837","#,
                r#""bid_qty":"0.000000000000000001","ask_px":"61838","ask_qty":"0.1","#,
                r#""bids":[{}],"asks":[{}],"seq":99,"updates":2,"stale":false}}"#
            ),
            deep_bids.join(","),
            deep_asks.join(",")
        ),
        concat!(
            r#"{"venue":"binance-usdm","symbol":"BTCUSDT","bid_px":"61850.1","bid_qty":"2.5","#,
            r#""ask_px":"61850.2","ask_qty":"0.1","bids":[["61850.1","2.5"]],"#,
            r#""asks":[["61850.2","0.1"]],"seq":9,"updates":4,"stale":false,"#,
            r#""derivs":{"mark_px":"61850.12","index_px":"61849.9005","funding_rate":"0.0001","#,
            r#""next_funding_ns":1723104000000000000,"ts_ns":1723100000123000000},"#,
            r#""liquidations":2}"#
        )
        .to_string(),
        concat!(
            r#"{"venue":"binance-coinm","symbol":"BTCUSD_PERP","bid_px":null,"bid_qty":null,"#,
            r#""ask_px":null,"ask_qty":null,"bids":[],"asks":[],"seq":5,"updates":1,"#,
            r#""stale":true,"derivs":{"mark_px":"-92233720368.54775808","index_px":"0","#,
            r#""funding_rate":"-0.000375","next_funding_ns":0,"ts_ns":1}}"#
        )
        .to_string(),
        concat!(
            r#"{"venue":"coinbase-exchange","symbol":"ETH-USD","bid_px":"3456.78","#,
            r#""bid_qty":"1","ask_px":"3456.79","ask_qty":"0.5","bids":[["3456.78","1"]],"#,
            r#""asks":[["3456.79","0.5"]],"seq":1234,"updates":2,"stale":false}"#
        )
        .to_string(),
        concat!(
            r#"{"venue":"binance-usdm","symbol":"ETHUSDT","bid_px":null,"bid_qty":null,"#,
            r#""ask_px":null,"ask_qty":null,"bids":[],"asks":[],"seq":3,"updates":1,"#,
            r#""stale":false,"liquidations":1}"#
        )
        .to_string(),
    ];

    // `symbol flags ts kp spread bps mid micro bid_depth ask_depth imb vwap_buy vwap_sell
    // vol buy sell tfi ofi_window ofi_total rate levels vwap_qty half_life trade_w rate_w`,
    // `-` for an invalid kernel.
    let kernel_lines = [
        "BTC-USD 479 1700000000000100000 4 37 598 618378150 618376300 2650000100 \
         12345678902 -646432 - 618370001 12.5 5 0 1000000 -42 -9223372036854775808 12345 5 \
         100000000 30000000000 5000000000 1000000000",
        "ETHUSDT 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
        "SPREAD-BTC/ETH 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
        "ETH-USD 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
        "BTCUSDT 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
        "BTCUSDT 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
        "BTCUSD_PERP 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
        "ETH-USD 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
        "ETHUSDT 0 0 0 - - - - 0 0 - - - - 0 0 - 0 0 0 0 0 0 0 0",
    ]
    .map(String::from)
    .to_vec();

    Fixture {
        path,
        _writer: w,
        c_lines,
        json_lines,
        kernel_lines,
    }
}

#[test]
fn fixture_matches_the_rust_reader() {
    // Guards the hand-written expectations against a mistake in the fixture itself.
    let dir = TempDir::new("rust");
    let f = fixture(&dir);
    // SAFETY: the file is this test's own and nothing truncates it.
    let r = unsafe { hermes_shm::ShmReader::open(&f.path) }.unwrap();
    let inst = r.instruments();
    let names: Vec<_> = inst
        .iter()
        .map(|i| (i.venue.name(), i.symbol.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("coinbase", "BTC-USD"),
            ("binance", "ETHUSDT"),
            ("webhook", "SPREAD-BTC/ETH"),
            ("coinbase", "ETH-USD"),
            ("binance", "BTCUSDT"),
            ("binance-usdm", "BTCUSDT"),
            ("binance-coinm", "BTCUSD_PERP"),
            ("coinbase-exchange", "ETH-USD"),
            ("binance-usdm", "ETHUSDT"),
        ]
    );
    assert_eq!(r.read(inst[3].slot).unwrap().seq, 0, "never published");
    let last = r.read(inst[4].slot).unwrap();
    assert_eq!(
        (last.seq, last.update_id, last.bid_levels().len()),
        (4, 99, 10)
    );
    // The Rust JSON (`hermes shm dump --json`) is what the Python reader must print.
    let json: Vec<String> = inst
        .iter()
        .map(|i| {
            hermes_shm::json::tob_json(
                i.venue.name(),
                &i.symbol,
                i.price_decimals,
                i.size_decimals,
                &r.read(i.slot).unwrap(),
            )
        })
        .collect();
    assert_lines(&json, &f.json_lines, "Rust JSON");
}

#[test]
fn c_reader_prints_exact_lines() {
    let dir = TempDir::new("c");
    let f = fixture(&dir);
    let Some(bin) = compile_c(&crate_path("examples/c/reader.c"), &dir.join("reader")) else {
        return;
    };
    let out = Command::new(&bin).arg(&f.path).output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_lines(&stdout_lines(&out, "C reader"), &f.c_lines, "C reader");
}

#[test]
fn python_reader_prints_exact_json_lines() {
    let dir = TempDir::new("py");
    let f = fixture(&dir);
    let Some(py) = python() else { return };
    let out = Command::new(py)
        .arg(crate_path("python/hermes_shm.py"))
        .arg(&f.path)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_lines(
        &stdout_lines(&out, "Python reader"),
        &f.json_lines,
        "Python reader",
    );
}

/// Prints [`Fixture::kernel_lines`] through the C header.
const C_KERNELS: &str = r#"
#include "hermes_shm.h"
#include <inttypes.h>
static void opt(const struct hermes_tob *t, unsigned bit, int64_t v) {
    if (t->kernel_flags & bit) printf(" %" PRId64, v); else printf(" -");
}
int main(int argc, char **argv) {
    struct hermes_shm shm;
    uint32_t i;
    if (argc != 2 || hermes_shm_open(argv[1], &shm) != HERMES_SHM_OK) return 1;
    for (i = 0; i < hermes_shm_instrument_count(&shm); i++) {
        struct hermes_instrument inst;
        struct hermes_tob t;
        memset(&t, 0, sizeof t);
        if (hermes_shm_instrument(&shm, i, &inst) != HERMES_SHM_OK ||
            hermes_shm_read(&shm, inst.slot, &t) != HERMES_SHM_OK) return 1;
        printf("%s %" PRIu64 " %" PRId64 " %u", inst.symbol, t.kernel_flags, t.kernel_ts_ns,
               t.kernel_price_decimals);
        opt(&t, HERMES_KVALID_SPREAD_TICKS, t.spread_ticks);
        opt(&t, HERMES_KVALID_SPREAD_BPS, t.spread_bps_x100);
        opt(&t, HERMES_KVALID_MID, t.mid_px);
        opt(&t, HERMES_KVALID_MICROPRICE, t.microprice_px);
        printf(" %" PRId64 " %" PRId64, t.bid_depth, t.ask_depth);
        opt(&t, HERMES_KVALID_IMBALANCE, t.imbalance_ppm);
        opt(&t, HERMES_KVALID_VWAP_BUY, t.vwap_buy_px);
        opt(&t, HERMES_KVALID_VWAP_SELL, t.vwap_sell_px);
        if (t.kernel_flags & HERMES_KVALID_VOLATILITY) printf(" %.17g", t.volatility_bps);
        else printf(" -");
        printf(" %" PRId64 " %" PRId64, t.trade_buy_qty, t.trade_sell_qty);
        opt(&t, HERMES_KVALID_TRADE_IMBALANCE, t.trade_imbalance_ppm);
        printf(" %" PRId64 " %" PRId64 " %" PRIu64 " %u %" PRId64 " %" PRId64 " %" PRId64
               " %" PRId64 "\n", t.ofi_window, t.ofi_total, t.updates_per_s_x100,
               t.kernel_levels, t.vwap_qty, t.vol_half_life_ns, t.trade_window_ns,
               t.rate_window_ns);
    }
    hermes_shm_close(&shm);
    return 0;
}
"#;

/// Prints [`Fixture::kernel_lines`] through the Python reader.
const PY_KERNELS: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
from hermes_shm import HermesShm, _PAYLOAD, SLOT_KERNEL_FLAGS

def f(v):
    if v is None:
        return "-"
    return format(v, ".17g") if isinstance(v, float) else str(v)

with HermesShm(sys.argv[2]) as shm:
    for inst in shm.instruments():
        t = shm.read(inst.slot)
        k = t.kernels
        flags = _PAYLOAD.unpack_from(shm._map, shm.slots_offset + inst.slot * 1024 + 8)[
            SLOT_KERNEL_FLAGS - 1]
        print(" ".join([inst.symbol, str(flags)] + [f(v) for v in k]))
"#;

#[test]
fn c_and_python_readers_decode_the_kernels() {
    let dir = TempDir::new("kernels");
    let f = fixture(&dir);
    if let Some(bin) = {
        let src = dir.join("kernels.c");
        std::fs::write(&src, C_KERNELS).unwrap();
        compile_c(&src, &dir.join("kernels"))
    } {
        let out = Command::new(&bin).arg(&f.path).output().unwrap();
        assert_lines(
            &stdout_lines(&out, "C kernels"),
            &f.kernel_lines,
            "C kernels",
        );
    }
    if let Some(py) = python() {
        let out = Command::new(py)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-c")
            .arg(PY_KERNELS)
            .arg(crate_path("python"))
            .arg(&f.path)
            .output()
            .unwrap();
        assert_lines(
            &stdout_lines(&out, "Python kernels"),
            &f.kernel_lines,
            "Python kernels",
        );
    }
    // And the Rust reader round-trips the struct.
    // SAFETY: the file is this test's own.
    let r = unsafe { hermes_shm::ShmReader::open(&f.path) }.unwrap();
    let k = r.read(r.instruments()[0].slot).unwrap().kernels;
    assert_eq!(k.vwap_buy_px, None);
    assert_eq!(k.volatility_bps, Some(12.5));
    assert_eq!(k.ofi_total, i64::MIN);
}

/// `symbol flags mark index funding next_funding ts liquidations` per instrument through
/// the C header: the raw derivatives words, and `derivs` or `-` for the flag.
const C_DERIVS: &str = r#"
#include "hermes_shm.h"
#include <inttypes.h>
int main(int argc, char **argv) {
    struct hermes_shm shm;
    uint32_t i;
    if (argc != 2 || hermes_shm_open(argv[1], &shm) != HERMES_SHM_OK) return 1;
    for (i = 0; i < hermes_shm_instrument_count(&shm); i++) {
        struct hermes_instrument inst;
        struct hermes_tob t;
        if (hermes_shm_instrument(&shm, i, &inst) != HERMES_SHM_OK ||
            hermes_shm_read(&shm, inst.slot, &t) != HERMES_SHM_OK) return 1;
        printf("%s %s %s %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRIu64
               "\n", hermes_venue_name(inst.venue), inst.symbol,
               (t.flags & HERMES_FLAG_HAS_DERIVS) ? "derivs" : "-", t.mark_px, t.index_px,
               t.funding_rate, t.next_funding_ns, t.derivs_ts_ns, t.liquidations);
    }
    hermes_shm_close(&shm);
    return 0;
}
"#;

/// The same through the Python reader, the values taken from `TopOfBook.derivs` when it
/// has them (and checked to be `None` otherwise).
const PY_DERIVS: &str = r#"
import sys
sys.path.insert(0, sys.argv[1])
from hermes_shm import HermesShm

with HermesShm(sys.argv[2]) as shm:
    for inst in shm.instruments():
        t = shm.read(inst.slot)
        d = t.derivs
        if d is None:
            assert not t.has_derivs
            vals = [t.mark_px, t.index_px, t.funding_rate, t.next_funding_ns, t.derivs_ts_ns]
        else:
            assert t.has_derivs
            vals = list(d)
        print(" ".join([inst.venue, inst.symbol, "derivs" if d else "-"]
                       + [str(v) for v in vals + [t.liquidations]]))
"#;

#[test]
fn c_and_python_readers_decode_the_derivatives() {
    let dir = TempDir::new("derivs");
    let f = fixture(&dir);
    // What the Rust reader reads, in the programs' format.
    // SAFETY: the file is this test's own.
    let r = unsafe { hermes_shm::ShmReader::open(&f.path) }.unwrap();
    let want: Vec<String> = r
        .instruments()
        .iter()
        .map(|i| {
            let t = r.read(i.slot).unwrap();
            format!(
                "{} {} {} {} {} {} {} {} {}",
                i.venue.name(),
                i.symbol,
                if t.has_derivs() { "derivs" } else { "-" },
                t.mark_px,
                t.index_px,
                t.funding_rate,
                t.next_funding_ns,
                t.derivs_ts_ns,
                t.liquidations
            )
        })
        .collect();
    // And that is what the fixture published.
    assert_eq!(
        want[5],
        "binance-usdm BTCUSDT derivs 6185012000000 6184990050000 10000 1723104000000000000 \
         1723100000123000000 2"
    );
    assert_eq!(
        want[6],
        "binance-coinm BTCUSD_PERP derivs -9223372036854775808 0 -37500 0 1 0"
    );
    assert_eq!(want[7], "coinbase-exchange ETH-USD - 777 778 779 780 0 0");
    assert_eq!(want[8], "binance-usdm ETHUSDT - 0 0 0 0 0 1");
    if let Some(bin) = {
        let src = dir.join("derivs.c");
        std::fs::write(&src, C_DERIVS).unwrap();
        compile_c(&src, &dir.join("derivs"))
    } {
        let out = Command::new(&bin).arg(&f.path).output().unwrap();
        assert_lines(&stdout_lines(&out, "C derivs"), &want, "C derivs");
    }
    if let Some(py) = python() {
        let out = Command::new(py)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-c")
            .arg(PY_DERIVS)
            .arg(crate_path("python"))
            .arg(&f.path)
            .output()
            .unwrap();
        assert_lines(&stdout_lines(&out, "Python derivs"), &want, "Python derivs");
    }
}

/// Runs a reader expected to refuse `path`; returns its stderr.
fn refused(mut cmd: Command, code: i32, what: &str) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: status; stderr: {err}"
    );
    assert!(
        out.stdout.is_empty(),
        "{what}: printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

#[test]
fn readers_refuse_unknown_versions_and_foreign_files() {
    let dir = TempDir::new("refuse");
    let good = dir.join("region");
    drop(
        ShmWriter::create(
            &good,
            WriterOptions {
                slots: 2,
                group_readable: false,
                replace_foreign: false,
            },
        )
        .unwrap(),
    );
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[header::VERSION..header::VERSION + 4].copy_from_slice(&4u32.to_le_bytes());
    let bumped = dir.join("bumped");
    std::fs::write(&bumped, &bytes).unwrap();
    // A file from a version-2 writer (same sizes, no derivatives) as far as a reader can
    // tell.
    bytes[header::VERSION..header::VERSION + 4].copy_from_slice(&2u32.to_le_bytes());
    let v2 = dir.join("v2");
    std::fs::write(&v2, &bytes).unwrap();
    // A file from a version-1 writer (512-byte slots) as far as a reader can tell.
    bytes[header::VERSION..header::VERSION + 4].copy_from_slice(&1u32.to_le_bytes());
    bytes[header::SLOT_SIZE..header::SLOT_SIZE + 4].copy_from_slice(&512u32.to_le_bytes());
    let v1 = dir.join("v1");
    std::fs::write(&v1, &bytes).unwrap();
    let foreign = dir.join("foreign");
    std::fs::write(&foreign, vec![b'x'; 8192]).unwrap();
    let missing = dir.join("missing");

    let version_msg = format!(
        "{}: shm layout version 4, this reader understands version 3; use a matching hermes \
         build (the file was written by a newer hermes: read it with that build's readers)",
        bumped.display()
    );
    let older = |p: &Path, v: u32| {
        format!(
            "{}: shm layout version {v}, this reader understands version 3; use a matching \
             hermes build (the file was written by an older hermes: restart the engine with \
             this build)",
            p.display()
        )
    };
    let v1_msg = older(&v1, 1);
    let v2_msg = older(&v2, 2);
    // SAFETY: test-owned files.
    let e = unsafe { hermes_shm::ShmReader::open(&v1) }.err().unwrap();
    assert_eq!(e.to_string(), v1_msg);
    // SAFETY: as above.
    let e = unsafe { hermes_shm::ShmReader::open(&v2) }.err().unwrap();
    assert_eq!(e.to_string(), v2_msg);
    // SAFETY: as above.
    let e = unsafe { hermes_shm::ShmReader::open(&bumped) }
        .err()
        .unwrap();
    assert_eq!(e.to_string(), version_msg);
    let magic_msg = format!("{}: not a Hermes shm file (bad magic)", foreign.display());
    let missing_msg = format!("{}: No such file or directory", missing.display());

    if let Some(py) = python() {
        let script = crate_path("python/hermes_shm.py");
        let run = |p: &Path| {
            let mut c = Command::new(py);
            c.arg(&script).arg(p);
            c
        };
        let err = refused(run(&bumped), 2, "python, bumped version");
        assert!(err.contains(&version_msg), "{err}");
        let err = refused(run(&v1), 2, "python, version 1 file");
        assert!(err.contains(&v1_msg), "{err}");
        let err = refused(run(&v2), 2, "python, version 2 file");
        assert!(err.contains(&v2_msg), "{err}");
        let err = refused(run(&foreign), 2, "python, foreign file");
        assert!(err.contains(&magic_msg), "{err}");
        let err = refused(run(&missing), 2, "python, missing file");
        assert!(err.contains(&missing_msg), "{err}");
        // The untouched file is accepted (the refusal is about the version alone).
        let ok = Command::new(py).arg(&script).arg(&good).output().unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    if let Some(bin) = compile_c(&crate_path("examples/c/reader.c"), &dir.join("reader")) {
        let run = |p: &Path| {
            let mut c = Command::new(&bin);
            c.arg(p);
            c
        };
        let err = refused(run(&bumped), 1, "C, bumped version");
        assert!(err.contains(&version_msg), "{err}");
        let err = refused(run(&v1), 1, "C, version 1 file");
        assert!(err.contains(&v1_msg), "{err}");
        let err = refused(run(&v2), 1, "C, version 2 file");
        assert!(err.contains(&v2_msg), "{err}");
        let err = refused(run(&foreign), 1, "C, foreign file");
        assert!(err.contains(&magic_msg), "{err}");
        let err = refused(run(&missing), 1, "C, missing file");
        assert!(err.contains(&missing_msg), "{err}");
        let ok = Command::new(&bin).arg(&good).output().unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
}

#[test]
fn header_builds_cleanly_as_strict_c_and_as_cpp() {
    let dir = TempDir::new("strict");
    let include = crate_path("include");
    if require("cc", "the strict C build of the header") {
        let out = Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Wconversion"])
            .args([
                "-Wsign-conversion",
                "-Wshadow",
                "-Wcast-qual",
                "-Werror",
                "-fsyntax-only",
                "-I",
            ])
            .arg(&include)
            .arg(crate_path("examples/c/reader.c"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if require("c++", "the C++ build of the header") {
        let src = dir.join("use.cpp");
        std::fs::write(&src, CPP_USE).unwrap();
        let out = Command::new("c++")
            .args([
                "-std=c++17",
                "-Wall",
                "-Wextra",
                "-Wpedantic",
                "-Werror",
                "-fsyntax-only",
                "-I",
            ])
            .arg(&include)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every function of the header, used from C++.
const CPP_USE: &str = r#"
#include "hermes_shm.h"
#include <cstdio>
int main(int argc, char **argv) {
    struct hermes_shm shm;
    char msg[256], num[HERMES_DECIMAL_BUF];
    int rc = hermes_shm_open(argc > 1 ? argv[1] : "x", &shm);
    if (rc != HERMES_SHM_OK) {
        std::puts(hermes_shm_format_error(&shm, rc, msg, sizeof msg));
        return 1;
    }
    for (uint32_t i = 0; i < hermes_shm_instrument_count(&shm); i++) {
        struct hermes_instrument inst;
        struct hermes_tob tob;
        if (hermes_shm_instrument(&shm, i, &inst) == HERMES_SHM_OK &&
            hermes_shm_read(&shm, inst.slot, &tob) == HERMES_SHM_OK &&
            hermes_shm_try_read(&shm, inst.slot, &tob) == HERMES_SHM_OK)
            std::printf("%s %s %s\n", hermes_venue_name(inst.venue), inst.symbol,
                        hermes_format_decimal(tob.bid_px, inst.price_decimals, num));
    }
    std::printf("%s %lld %u %llu %s\n",
                hermes_writer_state_name(hermes_shm_writer_status(&shm, 500000000)),
                (long long)hermes_shm_heartbeat_age_ns(&shm), hermes_shm_writer_pid(&shm),
                (unsigned long long)hermes_shm_generation(&shm), hermes_shm_strerror(rc));
    hermes_shm_close(&shm);
    return 0;
}
"#;

/// `status PATH MAX_AGE_MS [REPLACEMENT]`: maps PATH, optionally renames REPLACEMENT onto
/// PATH, prints the writer state.
const C_STATUS: &str = r#"
#include "hermes_shm.h"
#include <stdlib.h>
int main(int argc, char **argv) {
    struct hermes_shm shm;
    char msg[512];
    int rc = hermes_shm_open(argv[1], &shm);
    if (argc < 3 || rc != HERMES_SHM_OK) {
        fprintf(stderr, "%s\n", hermes_shm_format_error(&shm, rc, msg, sizeof msg));
        return 1;
    }
    if (argc > 3 && rename(argv[3], argv[1]) != 0) return 1;
    printf("%s\n", hermes_writer_state_name(
        hermes_shm_writer_status(&shm, (int64_t)atoll(argv[2]) * 1000000)));
    hermes_shm_close(&shm);
    return 0;
}
"#;

const PY_STATUS: &str = r#"
import os, sys
sys.path.insert(0, sys.argv[1])
from hermes_shm import HermesShm
with HermesShm(sys.argv[2]) as shm:
    if len(sys.argv) > 4:
        os.rename(sys.argv[4], sys.argv[2])
    print(shm.writer_status(max_age=int(sys.argv[3]) / 1000))
"#;

#[test]
fn readers_tell_the_writer_state() {
    let dir = TempDir::new("status");
    let live = dir.join("live");
    let writer = ShmWriter::create(
        &live,
        WriterOptions {
            slots: 2,
            group_readable: false,
            replace_foreign: false,
        },
    )
    .unwrap();
    writer.heartbeat();
    let base = std::fs::read(&live).unwrap();
    let patched = |name: &str, off: usize, val: &[u8]| {
        let mut b = base.clone();
        b[off..off + val.len()].copy_from_slice(val);
        let p = dir.join(name);
        std::fs::write(&p, b).unwrap();
        p
    };
    // A pid that existed a moment ago and is gone now (reaped).
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let dead = patched("dead", header::WRITER_PID, &dead_pid.to_le_bytes());
    let stalled = patched("stalled", header::HEARTBEAT_NS, &1u64.to_le_bytes());
    let closed = patched("closed", header::FLAGS, &1u32.to_le_bytes());
    // Replaced: the reader maps `target`, then a new file is renamed onto the path.
    let target = |name: &str| patched(name, 0, b"HERMESHM");

    let mut cases: Vec<(&str, Vec<PathBuf>, &str)> = vec![
        ("live", vec![live.clone()], "alive"),
        ("dead", vec![dead], "dead"),
        ("stalled", vec![stalled], "stalled"),
        ("closed", vec![closed], "closed"),
    ];
    let c_replaced = vec![target("c-old"), target("c-new")];
    let py_replaced = vec![target("py-old"), target("py-new")];

    if let Some(bin) = {
        let src = dir.join("status.c");
        std::fs::write(&src, C_STATUS).unwrap();
        compile_c(&src, &dir.join("status"))
    } {
        cases.push(("replaced", c_replaced, "replaced"));
        for (name, paths, want) in &cases {
            let out = Command::new(&bin)
                .arg(&paths[0])
                .arg("10000")
                .args(&paths[1..])
                .output()
                .unwrap();
            assert_eq!(stdout_lines(&out, name), [*want], "C status of {name}");
        }
        cases.pop();
    }
    if let Some(py) = python() {
        cases.push(("replaced", py_replaced, "replaced"));
        for (name, paths, want) in &cases {
            let out = Command::new(py)
                // Importing from the source tree must not leave __pycache__ there.
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .arg("-c")
                .arg(PY_STATUS)
                .arg(crate_path("python"))
                .arg(&paths[0])
                .arg("10000")
                .args(&paths[1..])
                .output()
                .unwrap();
            assert_eq!(stdout_lines(&out, name), [*want], "Python status of {name}");
        }
    }
    drop(writer);
}
