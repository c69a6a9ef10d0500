/*
 * reader.c — print the top of book of every instrument in a Hermes shm region.
 *
 *     cc -std=c11 -Wall -Wextra -Werror -O2 -I shm/include -o reader shm/examples/c/reader.c
 *     ./reader /dev/shm/hermes
 *
 * One line per published instrument, in directory (= slot) order:
 *
 *     venue symbol bid_px bid_qty ask_px ask_qty seq updates stale
 *     binance BTCUSDT 61837.63 1.5 61838 0.25 4242 17 false
 *
 * Prices and sizes are exact decimals (no trailing zeros, `0` for zero), or `-` for both
 * fields of an empty side. `seq` is the venue update id of the last applied message,
 * `updates` the slot's publication count, `stale` whether the book is being rebuilt after a
 * gap. A perpetual or future (HERMES_FLAG_HAS_DERIVS) adds its mark price, index price,
 * funding rate (exact decimals) and next funding time (Unix ns); an instrument with forced
 * liquidations adds their count:
 *
 *     binance-usdm BTCUSDT 61850.1 2.5 61850.2 0.1 9 4 false mark 61850.12 index 61849.9005
 *     funding 0.0001 next_funding_ns 1723104000000000000 liquidations 2     (one line)
 *
 * Exit status 0, or 1 with a message on stderr.
 */
#define _POSIX_C_SOURCE 200809L

#include "hermes_shm.h"

#include <inttypes.h>
#include <stdio.h>

static void print_side(int present, int64_t px, int64_t qty, const struct hermes_instrument *inst) {
    char pbuf[HERMES_DECIMAL_BUF], qbuf[HERMES_DECIMAL_BUF];
    if (!present) {
        fputs(" - -", stdout);
        return;
    }
    printf(" %s %s", hermes_format_decimal(px, inst->price_decimals, pbuf),
           hermes_format_decimal(qty, inst->size_decimals, qbuf));
}

int main(int argc, char **argv) {
    struct hermes_shm shm;
    char msg[1024];
    uint32_t i, count;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH\n", argc > 0 ? argv[0] : "reader");
        return 1;
    }
    rc = hermes_shm_open(argv[1], &shm);
    if (rc != HERMES_SHM_OK) {
        fprintf(stderr, "reader: %s\n", hermes_shm_format_error(&shm, rc, msg, sizeof msg));
        return 1;
    }
    count = hermes_shm_instrument_count(&shm);
    for (i = 0; i < count; i++) {
        struct hermes_instrument inst;
        struct hermes_tob tob;
        const char *venue;
        rc = hermes_shm_instrument(&shm, i, &inst);
        venue = hermes_venue_name(inst.venue);
        if (rc != HERMES_SHM_OK || !venue) {
            /* The Rust reader skips entries it cannot use (slot outside the file, unknown
             * venue); do the same, but say so. */
            fprintf(stderr, "reader: %s: directory entry %" PRIu32 " skipped: %s\n", argv[1], i,
                    rc != HERMES_SHM_OK ? hermes_shm_strerror(rc) : "unknown venue code");
            continue;
        }
        rc = hermes_shm_read(&shm, inst.slot, &tob);
        if (rc != HERMES_SHM_OK) {
            fprintf(stderr, "reader: %s: slot %" PRIu32 " (%s %s): %s\n", argv[1], inst.slot, venue,
                    inst.symbol, hermes_shm_strerror(rc));
            hermes_shm_close(&shm);
            return 1;
        }
        printf("%s %s", venue, inst.symbol);
        print_side((tob.flags & HERMES_FLAG_HAS_BID) != 0, tob.bid_px, tob.bid_qty, &inst);
        print_side((tob.flags & HERMES_FLAG_HAS_ASK) != 0, tob.ask_px, tob.ask_qty, &inst);
        printf(" %" PRIu64 " %" PRIu64 " %s", tob.update_id, tob.updates,
               (tob.flags & HERMES_FLAG_STALE) ? "true" : "false");
        if (tob.flags & HERMES_FLAG_HAS_DERIVS) {
            char m[HERMES_DECIMAL_BUF], x[HERMES_DECIMAL_BUF], f[HERMES_DECIMAL_BUF];
            printf(" mark %s index %s funding %s next_funding_ns %" PRId64,
                   hermes_format_decimal(tob.mark_px, HERMES_SHM_DERIV_DECIMALS, m),
                   hermes_format_decimal(tob.index_px, HERMES_SHM_DERIV_DECIMALS, x),
                   hermes_format_decimal(tob.funding_rate, HERMES_SHM_DERIV_DECIMALS, f),
                   tob.next_funding_ns);
        }
        if (tob.liquidations > 0) printf(" liquidations %" PRIu64, tob.liquidations);
        putchar('\n');
    }
    hermes_shm_close(&shm);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "reader: cannot write the output\n");
        return 1;
    }
    return 0;
}
