/*
 * hermes_shm.h — read the Hermes shared-memory region from C11 or C++11.
 *
 * Header-only: every function is `static inline`. Mirrors shm/LAYOUT.md (layout version 3),
 * which is authoritative; the Rust definition is shm/src/layout.rs.
 *
 *     struct hermes_shm shm;
 *     int rc = hermes_shm_open("/dev/shm/hermes", &shm);
 *     if (rc != HERMES_SHM_OK) {
 *         char msg[512];
 *         fprintf(stderr, "%s\n", hermes_shm_format_error(&shm, rc, msg, sizeof msg));
 *         return 1;
 *     }
 *     for (uint32_t i = 0; i < hermes_shm_instrument_count(&shm); i++) {
 *         struct hermes_instrument inst;
 *         struct hermes_tob tob;
 *         if (hermes_shm_instrument(&shm, i, &inst) == HERMES_SHM_OK &&
 *             hermes_shm_read(&shm, inst.slot, &tob) == HERMES_SHM_OK)
 *             printf("%s %lld mid %lld (at %u decimals)\n", inst.symbol, (long long)tob.bid_px,
 *                    (long long)tob.mid_px, tob.kernel_price_decimals);
 *     }
 *     hermes_shm_close(&shm);
 *
 * Requirements: a 64-bit little-endian POSIX system with lock-free 8-byte atomics (the
 * mapping is read-only, so an atomic load must be a plain load; it is on x86-64 and
 * AArch64). The functions use POSIX (open, mmap, kill, clock_gettime): include this header
 * before any system header, or compile with _POSIX_C_SOURCE >= 200809L (or _GNU_SOURCE /
 * _DEFAULT_SOURCE) defined.
 *
 * Thread safety: a `struct hermes_shm` is immutable after hermes_shm_open, so any number of
 * threads may read through it concurrently. Reading never blocks or slows the writer.
 */
#ifndef HERMES_SHM_H
#define HERMES_SHM_H

#if !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE)
#if defined(_FEATURES_H) && defined(__STRICT_ANSI__)
/* glibc already settled on strict ISO C without POSIX: asking for it now has no effect. */
#error "hermes_shm.h needs POSIX: include it before any system header, or compile with -D_POSIX_C_SOURCE=200809L"
#endif
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
#include <atomic>
/* std::atomic<uint64_t> has the size and representation of uint64_t on every platform this
 * header supports (checked below), so the mapped words can be viewed as atomics. */
typedef std::atomic<uint64_t> hermes_atomic_u64;
typedef std::atomic<uint32_t> hermes_atomic_u32;
#define HERMES_SHM_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
/* Atomic loads of the u64/u32 at byte address `p` inside the mapping. */
#define HERMES_SHM_LOAD_U64(p, order) (reinterpret_cast<const hermes_atomic_u64 *>(p)->load(order))
#define HERMES_SHM_LOAD_U32(p, order) (reinterpret_cast<const hermes_atomic_u32 *>(p)->load(order))
#define HERMES_SHM_ACQUIRE std::memory_order_acquire
#define HERMES_SHM_RELAXED std::memory_order_relaxed
#define HERMES_SHM_FENCE_ACQUIRE() std::atomic_thread_fence(std::memory_order_acquire)
#define HERMES_SHM_U64_LOCK_FREE (ATOMIC_LLONG_LOCK_FREE == 2 || ATOMIC_LONG_LOCK_FREE == 2)
#define HERMES_SHM_U32_LOCK_FREE (ATOMIC_INT_LOCK_FREE == 2)
extern "C" {
#else
#if defined(__STDC_NO_ATOMICS__)
#error "hermes_shm.h needs C11 <stdatomic.h>"
#endif
#include <stdatomic.h>
typedef _Atomic uint64_t hermes_atomic_u64;
typedef _Atomic uint32_t hermes_atomic_u32;
#define HERMES_SHM_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
/* Atomic loads of the u64/u32 at byte address `p` inside the mapping. C11's
 * atomic_load_explicit takes a pointer to non-const before C17 (DR 459), so the const is
 * dropped through uintptr_t; only loads are ever made through these pointers, which is
 * what makes a PROT_READ mapping safe to use. */
#define HERMES_SHM_LOAD_U64(p, order) \
    atomic_load_explicit((hermes_atomic_u64 *)(uintptr_t)(const void *)(p), order)
#define HERMES_SHM_LOAD_U32(p, order) \
    atomic_load_explicit((hermes_atomic_u32 *)(uintptr_t)(const void *)(p), order)
#define HERMES_SHM_ACQUIRE memory_order_acquire
#define HERMES_SHM_RELAXED memory_order_relaxed
#define HERMES_SHM_FENCE_ACQUIRE() atomic_thread_fence(memory_order_acquire)
#define HERMES_SHM_U64_LOCK_FREE (ATOMIC_LLONG_LOCK_FREE == 2 || ATOMIC_LONG_LOCK_FREE == 2)
#define HERMES_SHM_U32_LOCK_FREE (ATOMIC_INT_LOCK_FREE == 2)
#endif

/* ---------------------------------------------------------------------------------------
 * Constants (LAYOUT.md)
 * ------------------------------------------------------------------------------------- */

/** The first 8 bytes of the file (not NUL-terminated in the file). */
#define HERMES_SHM_MAGIC "HERMESHM"
#define HERMES_SHM_MAGIC_LEN 8
/** The only layout version this header understands; readers refuse any other. */
#define HERMES_SHM_VERSION 3u
#define HERMES_SHM_HEADER_SIZE 4096u
#define HERMES_SHM_DIR_ENTRY_SIZE 64u
#define HERMES_SHM_SLOT_SIZE 1024u
#define HERMES_SHM_SLOT_WORDS 128u
/** Price levels per side in a slot. */
#define HERMES_SHM_DEPTH 10u
#define HERMES_SHM_MAX_SYMBOL_LEN 48u
/** Byte offset of the directory. */
#define HERMES_SHM_DIR_OFFSET 4096u
/** Byte offset of slot 0 for a file with `n` slots. */
#define HERMES_SHM_SLOTS_OFFSET(n) \
    ((uint64_t)HERMES_SHM_HEADER_SIZE + (uint64_t)HERMES_SHM_DIR_ENTRY_SIZE * (uint64_t)(n))
/** Total file size for `n` slots. */
#define HERMES_SHM_FILE_SIZE(n) \
    (HERMES_SHM_SLOTS_OFFSET(n) + (uint64_t)HERMES_SHM_SLOT_SIZE * (uint64_t)(n))

/* Header byte offsets. */
#define HERMES_SHM_HDR_MAGIC 0u
#define HERMES_SHM_HDR_VERSION 8u
#define HERMES_SHM_HDR_HEADER_SIZE 12u
#define HERMES_SHM_HDR_SLOT_SIZE 16u
#define HERMES_SHM_HDR_SLOT_COUNT 20u
#define HERMES_SHM_HDR_DIR_OFFSET 24u
#define HERMES_SHM_HDR_SLOTS_OFFSET 32u
#define HERMES_SHM_HDR_WRITER_PID 40u
#define HERMES_SHM_HDR_FLAGS 44u
#define HERMES_SHM_HDR_GENERATION 48u
#define HERMES_SHM_HDR_HEARTBEAT_NS 56u
#define HERMES_SHM_HDR_INSTRUMENT_COUNT 64u
#define HERMES_SHM_HDR_DEPTH 68u
#define HERMES_SHM_HDR_CREATED_NS 72u
#define HERMES_SHM_HDR_RESERVED 80u

/** Header `flags` bit 0: the writer closed cleanly. */
#define HERMES_SHM_HDR_FLAG_CLOSED 1u

/* Directory entry byte offsets. */
#define HERMES_SHM_DIR_VENUE 0u
#define HERMES_SHM_DIR_PRICE_DECIMALS 1u
#define HERMES_SHM_DIR_SIZE_DECIMALS 2u
#define HERMES_SHM_DIR_SYMBOL_LEN 3u
#define HERMES_SHM_DIR_SLOT_INDEX 4u
#define HERMES_SHM_DIR_SYMBOL 8u

/* Venue codes. */
#define HERMES_VENUE_COINBASE 1u
#define HERMES_VENUE_BINANCE 2u
#define HERMES_VENUE_WEBHOOK 3u
#define HERMES_VENUE_BINANCE_USDM 4u      /* Binance USD-M futures */
#define HERMES_VENUE_BINANCE_COINM 5u     /* Binance COIN-M futures: sizes in contracts */
#define HERMES_VENUE_COINBASE_EXCHANGE 6u /* the Coinbase Exchange feed */

/* Slot word indices (byte offset = index * 8). */
#define HERMES_SLOT_SEQ 0u
#define HERMES_SLOT_UPDATE_ID 1u
#define HERMES_SLOT_EXCH_TS_NS 2u
#define HERMES_SLOT_RECV_TS_NS 3u
#define HERMES_SLOT_PUBLISH_TS_NS 4u
#define HERMES_SLOT_UPDATES 5u
#define HERMES_SLOT_FLAGS 6u
#define HERMES_SLOT_LEVEL_COUNTS 7u
#define HERMES_SLOT_BID_PX 8u
#define HERMES_SLOT_BID_QTY 9u
#define HERMES_SLOT_ASK_PX 10u
#define HERMES_SLOT_ASK_QTY 11u
#define HERMES_SLOT_BIDS 12u /* DEPTH (price, size) pairs, best first */
#define HERMES_SLOT_ASKS 32u /* DEPTH (price, size) pairs, best first */
#define HERMES_SLOT_LAST_TRADE_PX 52u
#define HERMES_SLOT_LAST_TRADE_QTY 53u
#define HERMES_SLOT_LAST_TRADE_TS_NS 54u
#define HERMES_SLOT_LAST_TRADE_SIDE 55u
#define HERMES_SLOT_TRADES 56u
/* Derivatives (layout version 3): valid only when HERMES_FLAG_HAS_DERIVS is set in the FLAGS
 * word (0 otherwise). Prices and the rate are mantissas at HERMES_SHM_DERIV_DECIMALS (8),
 * not at the instrument's price decimals. */
#define HERMES_SLOT_MARK_PX 57u
#define HERMES_SLOT_INDEX_PX 58u        /* 0 when the venue gives none */
#define HERMES_SLOT_FUNDING_RATE 59u    /* per funding interval, signed */
#define HERMES_SLOT_NEXT_FUNDING_NS 60u /* Unix ns; 0 when the venue gives none */
#define HERMES_SLOT_DERIVS_TS_NS 61u    /* exchange time of the last mark price update */
#define HERMES_SLOT_LIQUIDATIONS 62u    /* u64: forced liquidations seen (whatever the flag) */
#define HERMES_SLOT_RESERVED 63u        /* reserved word before the kernels (zero) */
/** Decimals of mark_px, index_px and funding_rate. */
#define HERMES_SHM_DERIV_DECIMALS 8u
/* Analytics kernels (since layout version 2). An optional kernel is valid only when its
 * HERMES_KVALID_* bit is set in the KERNEL_FLAGS word; its word is 0 otherwise. */
#define HERMES_SLOT_KERNEL_FLAGS 64u
#define HERMES_SLOT_KERNEL_TS_NS 65u
#define HERMES_SLOT_SPREAD_TICKS 66u
#define HERMES_SLOT_SPREAD_BPS_X100 67u
#define HERMES_SLOT_MID_PX 68u
#define HERMES_SLOT_MICROPRICE_PX 69u
#define HERMES_SLOT_BID_DEPTH 70u
#define HERMES_SLOT_ASK_DEPTH 71u
#define HERMES_SLOT_IMBALANCE_PPM 72u
#define HERMES_SLOT_VWAP_BUY_PX 73u
#define HERMES_SLOT_VWAP_SELL_PX 74u
#define HERMES_SLOT_VOLATILITY_BPS 75u /* IEEE-754 binary64 bits */
#define HERMES_SLOT_TRADE_BUY_QTY 76u
#define HERMES_SLOT_TRADE_SELL_QTY 77u
#define HERMES_SLOT_TRADE_IMBALANCE_PPM 78u
#define HERMES_SLOT_OFI_WINDOW 79u
#define HERMES_SLOT_OFI_TOTAL 80u
#define HERMES_SLOT_UPDATES_PER_S_X100 81u
#define HERMES_SLOT_KERNEL_PRICE_DECIMALS 82u
#define HERMES_SLOT_KERNEL_LEVELS 83u
#define HERMES_SLOT_VWAP_QTY 84u
#define HERMES_SLOT_VOL_HALF_LIFE_NS 85u
#define HERMES_SLOT_TRADE_WINDOW_NS 86u
#define HERMES_SLOT_RATE_WINDOW_NS 87u
/** First word after the data (the rest of the slot is reserved). */
#define HERMES_SLOT_DATA_END 88u
/** Words 1..HERMES_SLOT_DATA_END-1 carry data; a read copies exactly these. */
#define HERMES_SLOT_DATA_WORDS (HERMES_SLOT_DATA_END - 1u)

/* Bits of the KERNEL_FLAGS word: which optional kernels are valid. */
#define HERMES_KVALID_SPREAD_TICKS (1u << 0)
#define HERMES_KVALID_SPREAD_BPS (1u << 1)
#define HERMES_KVALID_MID (1u << 2)
#define HERMES_KVALID_MICROPRICE (1u << 3)
#define HERMES_KVALID_IMBALANCE (1u << 4)
#define HERMES_KVALID_VWAP_BUY (1u << 5)
#define HERMES_KVALID_VWAP_SELL (1u << 6)
#define HERMES_KVALID_VOLATILITY (1u << 7)
#define HERMES_KVALID_TRADE_IMBALANCE (1u << 8)

/* Slot `flags` word bits. */
#define HERMES_FLAG_STALE (1u << 0)           /* rebuilding after a gap: do not trust */
#define HERMES_FLAG_CROSSED (1u << 1)         /* best bid >= best ask as the venue sent it */
#define HERMES_FLAG_HAS_BID (1u << 2)         /* bid_px/bid_qty are valid */
#define HERMES_FLAG_HAS_ASK (1u << 3)         /* ask_px/ask_qty are valid */
#define HERMES_FLAG_BBO_FROM_TICKER (1u << 4) /* best bid/ask from a newer ticker */
#define HERMES_FLAG_HAS_DERIVS (1u << 5)      /* mark/index/funding words are valid */

/* Last trade aggressor side. */
#define HERMES_SIDE_UNKNOWN 0u
#define HERMES_SIDE_BUY 1u
#define HERMES_SIDE_SELL 2u

/* ---------------------------------------------------------------------------------------
 * Byte images of the header and a directory entry, for the offset checks below. Fields
 * marked atomic must only be read through the accessors (atomic loads); the others are
 * written once before the file is renamed into place (header) or before the entry is
 * published (directory) and may be read plainly.
 * ------------------------------------------------------------------------------------- */

struct hermes_shm_header {
    uint8_t magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t slot_size;
    uint32_t slot_count;
    uint64_t dir_offset;
    uint64_t slots_offset;
    uint32_t writer_pid;
    uint32_t flags; /* atomic */
    uint64_t generation;
    uint64_t heartbeat_ns;     /* atomic */
    uint32_t instrument_count; /* atomic */
    uint32_t depth;
    uint64_t created_ns;
};

struct hermes_shm_dir_entry {
    uint8_t venue;
    uint8_t price_decimals;
    uint8_t size_decimals;
    uint8_t symbol_len;
    uint32_t slot_index;
    uint8_t symbol[48];
    uint8_t reserved[8];
};

HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, magic) == HERMES_SHM_HDR_MAGIC, "magic");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, version) == HERMES_SHM_HDR_VERSION, "version");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, header_size) == HERMES_SHM_HDR_HEADER_SIZE,
                         "header_size");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, slot_size) == HERMES_SHM_HDR_SLOT_SIZE,
                         "slot_size");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, slot_count) == HERMES_SHM_HDR_SLOT_COUNT,
                         "slot_count");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, dir_offset) == HERMES_SHM_HDR_DIR_OFFSET,
                         "dir_offset");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, slots_offset) == HERMES_SHM_HDR_SLOTS_OFFSET,
                         "slots_offset");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, writer_pid) == HERMES_SHM_HDR_WRITER_PID,
                         "writer_pid");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, flags) == HERMES_SHM_HDR_FLAGS, "flags");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, generation) == HERMES_SHM_HDR_GENERATION,
                         "generation");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, heartbeat_ns) == HERMES_SHM_HDR_HEARTBEAT_NS,
                         "heartbeat_ns");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, instrument_count) ==
                             HERMES_SHM_HDR_INSTRUMENT_COUNT,
                         "instrument_count");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, depth) == HERMES_SHM_HDR_DEPTH, "depth");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_header, created_ns) == HERMES_SHM_HDR_CREATED_NS,
                         "created_ns");
HERMES_SHM_STATIC_ASSERT(sizeof(struct hermes_shm_header) == HERMES_SHM_HDR_RESERVED, "header fields");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_dir_entry, venue) == HERMES_SHM_DIR_VENUE, "venue");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_dir_entry, price_decimals) ==
                             HERMES_SHM_DIR_PRICE_DECIMALS,
                         "price_decimals");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_dir_entry, size_decimals) ==
                             HERMES_SHM_DIR_SIZE_DECIMALS,
                         "size_decimals");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_dir_entry, symbol_len) == HERMES_SHM_DIR_SYMBOL_LEN,
                         "symbol_len");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_dir_entry, slot_index) == HERMES_SHM_DIR_SLOT_INDEX,
                         "slot_index");
HERMES_SHM_STATIC_ASSERT(offsetof(struct hermes_shm_dir_entry, symbol) == HERMES_SHM_DIR_SYMBOL, "symbol");
HERMES_SHM_STATIC_ASSERT(sizeof(struct hermes_shm_dir_entry) == HERMES_SHM_DIR_ENTRY_SIZE, "dir entry");
HERMES_SHM_STATIC_ASSERT(HERMES_SHM_DIR_SYMBOL + HERMES_SHM_MAX_SYMBOL_LEN <= HERMES_SHM_DIR_ENTRY_SIZE,
                         "symbol fits");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_BIDS + 2 * HERMES_SHM_DEPTH == HERMES_SLOT_ASKS, "bids");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_ASKS + 2 * HERMES_SHM_DEPTH == HERMES_SLOT_LAST_TRADE_PX, "asks");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_TRADES + 1 == HERMES_SLOT_MARK_PX, "trades");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_MARK_PX * 8u == 456u && HERMES_SLOT_INDEX_PX * 8u == 464u &&
                             HERMES_SLOT_FUNDING_RATE * 8u == 472u &&
                             HERMES_SLOT_NEXT_FUNDING_NS * 8u == 480u &&
                             HERMES_SLOT_DERIVS_TS_NS * 8u == 488u &&
                             HERMES_SLOT_LIQUIDATIONS * 8u == 496u,
                         "derivatives words (LAYOUT.md bytes 456-503)");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_LIQUIDATIONS + 1 == HERMES_SLOT_RESERVED, "derivatives");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_RESERVED < HERMES_SLOT_KERNEL_FLAGS, "a reserved word stays");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_KERNEL_FLAGS * 8u == 512u, "kernels on their own cache line");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_RATE_WINDOW_NS + 1u == HERMES_SLOT_DATA_END, "kernels");
HERMES_SHM_STATIC_ASSERT(HERMES_SLOT_DATA_END <= HERMES_SHM_SLOT_WORDS, "slot words");
HERMES_SHM_STATIC_ASSERT(HERMES_SHM_SLOT_WORDS * 8 == HERMES_SHM_SLOT_SIZE, "slot size");
HERMES_SHM_STATIC_ASSERT(HERMES_SHM_SLOT_SIZE % 64 == 0 && HERMES_SHM_HEADER_SIZE % 64 == 0,
                         "cache-line aligned slots");
HERMES_SHM_STATIC_ASSERT(sizeof(hermes_atomic_u64) == 8 && sizeof(hermes_atomic_u32) == 4,
                         "atomics have the size of the words they view");
HERMES_SHM_STATIC_ASSERT(HERMES_SHM_U64_LOCK_FREE && HERMES_SHM_U32_LOCK_FREE,
                         "lock-free 8- and 4-byte atomics are needed to read a read-only mapping");

/* ---------------------------------------------------------------------------------------
 * Types
 * ------------------------------------------------------------------------------------- */

/** Return codes. 0 is success; errors are negative. */
enum hermes_shm_rc {
    HERMES_SHM_OK = 0,
    HERMES_SHM_E_OPEN = -1,      /* open(2) failed; see `sys_errno` */
    HERMES_SHM_E_STAT = -2,      /* fstat(2) failed; see `sys_errno` */
    HERMES_SHM_E_MMAP = -3,      /* mmap(2) failed; see `sys_errno` */
    HERMES_SHM_E_MAGIC = -4,     /* not a Hermes shm file */
    HERMES_SHM_E_VERSION = -5,   /* a layout version this header does not know */
    HERMES_SHM_E_TRUNCATED = -6, /* shorter than its header says */
    HERMES_SHM_E_LAYOUT = -7,    /* header sizes or offsets disagree with this header */
    HERMES_SHM_E_RANGE = -8,     /* instrument or slot index out of range */
    HERMES_SHM_E_BUSY = -9,      /* the writer stayed inside the slot for the whole retry budget */
    HERMES_SHM_E_INVAL = -10     /* a NULL argument */
};

/** An open, read-only mapping of a region. Fill with hermes_shm_open. */
struct hermes_shm {
    const uint8_t *base; /* the mapping (NULL when not open) */
    size_t size;         /* bytes mapped (the file's size at open) */
    uint32_t slot_count;
    uint64_t slots_offset;
    dev_t dev; /* identity of the mapped file, to tell when the path was replaced */
    ino_t ino;
    const char *path; /* the caller's string, which must outlive the mapping */
    /* Details of the last hermes_shm_open failure, for hermes_shm_format_error. */
    int sys_errno;
    uint32_t found_version;
    uint64_t found_size;
    uint64_t needed_size;
};

/** A directory entry. */
struct hermes_instrument {
    uint8_t venue; /* HERMES_VENUE_* */
    uint8_t price_decimals;
    uint8_t size_decimals;
    uint8_t symbol_len;
    uint32_t slot;
    char symbol[HERMES_SHM_MAX_SYMBOL_LEN + 1]; /* NUL-terminated */
};

/** A consistent copy of one slot. Prices and sizes are mantissas at the instrument's
 *  decimals; times are Unix nanoseconds. */
struct hermes_tob {
    uint64_t seq; /* seqlock sequence of this copy: even, +2 per publication, 0 = never */
    uint64_t update_id;
    int64_t exch_ts_ns;
    int64_t recv_ts_ns;
    int64_t publish_ts_ns;
    uint64_t updates;
    uint64_t flags; /* HERMES_FLAG_* */
    uint32_t bid_levels; /* valid entries in bids (<= DEPTH) */
    uint32_t ask_levels; /* valid entries in asks (<= DEPTH) */
    int64_t bid_px;
    int64_t bid_qty;
    int64_t ask_px;
    int64_t ask_qty;
    int64_t bids[HERMES_SHM_DEPTH][2]; /* (price, size), best first */
    int64_t asks[HERMES_SHM_DEPTH][2];
    int64_t last_trade_px;
    int64_t last_trade_qty;
    int64_t last_trade_ts_ns;
    uint64_t last_trade_side; /* HERMES_SIDE_* */
    uint64_t trades;
    /* Derivatives (LAYOUT.md, "Derivatives"): valid only with HERMES_FLAG_HAS_DERIVS in
     * flags (0 otherwise). Prices and the rate at HERMES_SHM_DERIV_DECIMALS (8). */
    int64_t mark_px;
    int64_t index_px;
    int64_t funding_rate;    /* per funding interval, signed: 10000 = 0.0001 = 0.01 % */
    int64_t next_funding_ns; /* Unix ns */
    int64_t derivs_ts_ns;    /* exchange time of the last mark price update */
    uint64_t liquidations;   /* forced liquidations seen */
    /* Analytics kernels (LAYOUT.md, "Kernels"). Optional ones are valid only when their
     * HERMES_KVALID_* bit is set in kernel_flags (and are 0 otherwise). Sizes are mantissas
     * at the instrument's size decimals; mid_px, microprice_px, vwap_*_px at
     * kernel_price_decimals (the price decimals + 2, at most 18); ratios in ppm. */
    uint64_t kernel_flags;    /* HERMES_KVALID_* */
    int64_t kernel_ts_ns;     /* kernel clock (event time) */
    int64_t spread_ticks;     /* ask - bid, price mantissa */
    int64_t spread_bps_x100;  /* basis points x 100 */
    int64_t mid_px;
    int64_t microprice_px;
    int64_t bid_depth;        /* size of the top kernel_levels bid levels */
    int64_t ask_depth;
    int64_t imbalance_ppm;    /* (bid_depth - ask_depth) / (bid_depth + ask_depth) */
    int64_t vwap_buy_px;      /* average price to buy vwap_qty */
    int64_t vwap_sell_px;
    double volatility_bps;    /* EWMA mid volatility over 1 s (the one float) */
    int64_t trade_buy_qty;    /* aggressive buys in the trade window */
    int64_t trade_sell_qty;
    int64_t trade_imbalance_ppm;
    int64_t ofi_window;       /* order-flow imbalance over the trade window */
    int64_t ofi_total;        /* since the writer started (wrapping) */
    uint64_t updates_per_s_x100;
    uint32_t kernel_price_decimals;
    uint32_t kernel_levels;   /* N */
    int64_t vwap_qty;
    int64_t vol_half_life_ns;
    int64_t trade_window_ns;
    int64_t rate_window_ns;
};

/** The writer's state as a reader can tell it from the header. */
enum hermes_writer_state {
    HERMES_WRITER_ALIVE = 0,   /* heartbeat fresh */
    HERMES_WRITER_CLOSED = 1,  /* exited cleanly; the data is its last state */
    HERMES_WRITER_DEAD = 2,    /* process gone without closing */
    HERMES_WRITER_STALLED = 3, /* process exists, heartbeat too old */
    HERMES_WRITER_REPLACED = 4 /* a new writer renamed a new file into place: reopen */
};

/* ---------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------- */

/** A static description of a return code. */
static inline const char *hermes_shm_strerror(int rc) {
    switch (rc) {
    case HERMES_SHM_OK: return "success";
    case HERMES_SHM_E_OPEN: return "cannot open the shm file";
    case HERMES_SHM_E_STAT: return "cannot stat the shm file";
    case HERMES_SHM_E_MMAP: return "cannot map the shm file";
    case HERMES_SHM_E_MAGIC: return "not a Hermes shm file (bad magic); is the path right?";
    case HERMES_SHM_E_VERSION:
        return "unsupported shm layout version; this reader understands version 3; use a matching "
               "hermes build";
    case HERMES_SHM_E_TRUNCATED:
        return "the file is shorter than its header says; the writer may be starting or the file "
               "is damaged";
    case HERMES_SHM_E_LAYOUT: return "the header's sizes or offsets do not match layout version 3";
    case HERMES_SHM_E_RANGE: return "instrument or slot index out of range";
    case HERMES_SHM_E_BUSY:
        return "the writer stayed inside the slot too long (it may have died mid-update)";
    case HERMES_SHM_E_INVAL: return "invalid argument";
    default: return "unknown error";
    }
}

/** Formats the full message for `rc` as returned by hermes_shm_open on `shm` (path, errno
 *  text, versions and sizes as relevant) into `buf`, and returns `buf`. */
static inline const char *hermes_shm_format_error(const struct hermes_shm *shm, int rc, char *buf,
                                                  size_t len) {
    const char *path = (shm && shm->path) ? shm->path : "(null)";
    if (!buf || len == 0) return "";
    if (!shm) {
        snprintf(buf, len, "%s", hermes_shm_strerror(rc));
        return buf;
    }
    switch (rc) {
    case HERMES_SHM_E_OPEN: snprintf(buf, len, "%s: %s", path, strerror(shm->sys_errno)); break;
    case HERMES_SHM_E_STAT:
    case HERMES_SHM_E_MMAP:
        snprintf(buf, len, "%s: %s: %s", path, hermes_shm_strerror(rc), strerror(shm->sys_errno));
        break;
    case HERMES_SHM_E_VERSION:
        snprintf(buf, len,
                 "%s: shm layout version %u, this reader understands version %u; use a matching "
                 "hermes build (%s)",
                 path, (unsigned)shm->found_version, (unsigned)HERMES_SHM_VERSION,
                 shm->found_version < HERMES_SHM_VERSION
                     ? "the file was written by an older hermes: restart the engine with this build"
                     : "the file was written by a newer hermes: read it with that build's readers");
        break;
    case HERMES_SHM_E_TRUNCATED:
        snprintf(buf, len,
                 "%s: file is %llu bytes but its header needs %llu; the writer may be starting or "
                 "the file is damaged",
                 path, (unsigned long long)shm->found_size, (unsigned long long)shm->needed_size);
        break;
    default: snprintf(buf, len, "%s: %s", path, hermes_shm_strerror(rc)); break;
    }
    return buf;
}

/* ---------------------------------------------------------------------------------------
 * Open / close
 * ------------------------------------------------------------------------------------- */

static inline uint32_t hermes_shm__u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v); /* little-endian host (checked at open) */
    return v;
}

static inline uint64_t hermes_shm__u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/** Maps the region at `path` read-only and checks its magic, version and size. On success
 *  returns HERMES_SHM_OK and fills `out`; otherwise returns a negative code, leaves
 *  `out->base` NULL, and `out` holds what hermes_shm_format_error needs. `path` is kept by
 *  pointer (for the replaced-file check) and must outlive the mapping.
 *
 *  The static header fields are read with plain loads: the writer stores them before it
 *  renames the file into place, and never again. Nothing may truncate the file while it is
 *  mapped (touching a lost page raises SIGBUS); Hermes writers never do. */
static inline int hermes_shm_open(const char *path, struct hermes_shm *out) {
    struct stat st;
    int fd;
    void *map;
    const uint8_t *b;
    uint32_t slot_count;
    uint64_t need;
    const uint32_t endian_probe = 1;
    if (!out) return HERMES_SHM_E_INVAL;
    memset(out, 0, sizeof *out);
    out->path = path;
    if (!path) return HERMES_SHM_E_INVAL;
    {
        uint8_t first;
        memcpy(&first, &endian_probe, 1);
        if (first != 1) return HERMES_SHM_E_LAYOUT; /* the file is little-endian */
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        out->sys_errno = errno;
        return HERMES_SHM_E_OPEN;
    }
    if (fstat(fd, &st) != 0) {
        out->sys_errno = errno;
        close(fd);
        return HERMES_SHM_E_STAT;
    }
    out->found_size = (uint64_t)st.st_size;
    if (st.st_size < (off_t)HERMES_SHM_HEADER_SIZE) {
        char magic[HERMES_SHM_MAGIC_LEN];
        ssize_t got = pread(fd, magic, sizeof magic, 0);
        close(fd);
        /* Too short even for a header: say whether it is a foreign file or a truncated one. */
        out->needed_size = HERMES_SHM_HEADER_SIZE;
        if (got != (ssize_t)sizeof magic || memcmp(magic, HERMES_SHM_MAGIC, sizeof magic) != 0)
            return HERMES_SHM_E_MAGIC;
        return HERMES_SHM_E_TRUNCATED;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        out->sys_errno = errno;
        close(fd);
        return HERMES_SHM_E_MMAP;
    }
    close(fd); /* the mapping keeps the file referenced */
    b = (const uint8_t *)map;
    if (memcmp(b + HERMES_SHM_HDR_MAGIC, HERMES_SHM_MAGIC, HERMES_SHM_MAGIC_LEN) != 0) {
        munmap(map, (size_t)st.st_size);
        return HERMES_SHM_E_MAGIC;
    }
    out->found_version = hermes_shm__u32(b + HERMES_SHM_HDR_VERSION);
    if (out->found_version != HERMES_SHM_VERSION) {
        munmap(map, (size_t)st.st_size);
        return HERMES_SHM_E_VERSION;
    }
    slot_count = hermes_shm__u32(b + HERMES_SHM_HDR_SLOT_COUNT);
    if (hermes_shm__u32(b + HERMES_SHM_HDR_HEADER_SIZE) != HERMES_SHM_HEADER_SIZE ||
        hermes_shm__u32(b + HERMES_SHM_HDR_SLOT_SIZE) != HERMES_SHM_SLOT_SIZE ||
        hermes_shm__u64(b + HERMES_SHM_HDR_DIR_OFFSET) != HERMES_SHM_DIR_OFFSET ||
        hermes_shm__u64(b + HERMES_SHM_HDR_SLOTS_OFFSET) != HERMES_SHM_SLOTS_OFFSET(slot_count) ||
        hermes_shm__u32(b + HERMES_SHM_HDR_DEPTH) != HERMES_SHM_DEPTH) {
        munmap(map, (size_t)st.st_size);
        return HERMES_SHM_E_LAYOUT;
    }
    need = HERMES_SHM_FILE_SIZE(slot_count);
    if ((uint64_t)st.st_size < need) {
        out->needed_size = need;
        munmap(map, (size_t)st.st_size);
        return HERMES_SHM_E_TRUNCATED;
    }
    out->base = b;
    out->size = (size_t)st.st_size;
    out->slot_count = slot_count;
    out->slots_offset = HERMES_SHM_SLOTS_OFFSET(slot_count);
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    return HERMES_SHM_OK;
}

/** Unmaps the region. Safe to call twice or on a failed open. */
static inline void hermes_shm_close(struct hermes_shm *shm) {
    if (shm && shm->base) {
        /* munmap takes a non-const pointer; the mapping is ours to release. */
        munmap((void *)(uintptr_t)shm->base, shm->size);
        shm->base = NULL;
        shm->size = 0;
    }
}

/* ---------------------------------------------------------------------------------------
 * Directory
 * ------------------------------------------------------------------------------------- */

/** Number of published directory entries (at most slot_count). */
static inline uint32_t hermes_shm_instrument_count(const struct hermes_shm *shm) {
    uint32_t n;
    if (!shm || !shm->base) return 0;
    /* Acquire: pairs with the writer's release store of the count after it wrote entry
     * count-1, so the entries 0..n read afterwards (plain loads) are complete. */
    n = HERMES_SHM_LOAD_U32(shm->base + HERMES_SHM_HDR_INSTRUMENT_COUNT, HERMES_SHM_ACQUIRE);
    return n < shm->slot_count ? n : shm->slot_count;
}

/** Copies directory entry `i` into `out`. Returns HERMES_SHM_E_RANGE when `i` is not yet
 *  published or the entry names a slot outside the file. */
static inline int hermes_shm_instrument(const struct hermes_shm *shm, uint32_t i,
                                        struct hermes_instrument *out) {
    const uint8_t *e;
    uint32_t len;
    if (!shm || !shm->base || !out) return HERMES_SHM_E_INVAL;
    /* The acquire load of the count inside hermes_shm_instrument_count orders the plain
     * entry loads below after the writer's entry stores (entries never change once
     * published). */
    if (i >= hermes_shm_instrument_count(shm)) return HERMES_SHM_E_RANGE;
    e = shm->base + HERMES_SHM_DIR_OFFSET + (uint64_t)i * HERMES_SHM_DIR_ENTRY_SIZE;
    memset(out, 0, sizeof *out);
    out->venue = e[HERMES_SHM_DIR_VENUE];
    out->price_decimals = e[HERMES_SHM_DIR_PRICE_DECIMALS];
    out->size_decimals = e[HERMES_SHM_DIR_SIZE_DECIMALS];
    len = e[HERMES_SHM_DIR_SYMBOL_LEN];
    if (len > HERMES_SHM_MAX_SYMBOL_LEN) len = HERMES_SHM_MAX_SYMBOL_LEN;
    out->symbol_len = (uint8_t)len;
    memcpy(out->symbol, e + HERMES_SHM_DIR_SYMBOL, len);
    out->symbol[len] = '\0';
    out->slot = hermes_shm__u32(e + HERMES_SHM_DIR_SLOT_INDEX);
    if (out->slot >= shm->slot_count) return HERMES_SHM_E_RANGE;
    return HERMES_SHM_OK;
}

/** The venue's lowercase name (`coinbase`, `binance`, `webhook`, `binance-usdm`,
 *  `binance-coinm`, `coinbase-exchange`), or NULL if unknown. */
static inline const char *hermes_venue_name(uint8_t venue) {
    switch (venue) {
    case HERMES_VENUE_COINBASE: return "coinbase";
    case HERMES_VENUE_BINANCE: return "binance";
    case HERMES_VENUE_WEBHOOK: return "webhook";
    case HERMES_VENUE_BINANCE_USDM: return "binance-usdm";
    case HERMES_VENUE_BINANCE_COINM: return "binance-coinm";
    case HERMES_VENUE_COINBASE_EXCHANGE: return "coinbase-exchange";
    default: return NULL;
    }
}

/* ---------------------------------------------------------------------------------------
 * Seqlock reader
 * ------------------------------------------------------------------------------------- */

/* Byte address of word `w` of `slot`. */
static inline const uint8_t *hermes_shm__word(const struct hermes_shm *shm, uint32_t slot, unsigned w) {
    return shm->base + shm->slots_offset + (uint64_t)slot * HERMES_SHM_SLOT_SIZE + 8u * w;
}

static inline void hermes_shm__decode(uint64_t seq, const uint64_t *w, struct hermes_tob *out) {
    /* w[i] is slot word i+1. */
    unsigned d;
#define HERMES_SHM__W(idx) (w[(idx) - 1u])
    out->seq = seq;
    out->update_id = HERMES_SHM__W(HERMES_SLOT_UPDATE_ID);
    out->exch_ts_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_EXCH_TS_NS);
    out->recv_ts_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_RECV_TS_NS);
    out->publish_ts_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_PUBLISH_TS_NS);
    out->updates = HERMES_SHM__W(HERMES_SLOT_UPDATES);
    out->flags = HERMES_SHM__W(HERMES_SLOT_FLAGS);
    out->bid_levels = (uint32_t)(HERMES_SHM__W(HERMES_SLOT_LEVEL_COUNTS) & 0xffffffffu);
    out->ask_levels = (uint32_t)(HERMES_SHM__W(HERMES_SLOT_LEVEL_COUNTS) >> 32);
    if (out->bid_levels > HERMES_SHM_DEPTH) out->bid_levels = HERMES_SHM_DEPTH;
    if (out->ask_levels > HERMES_SHM_DEPTH) out->ask_levels = HERMES_SHM_DEPTH;
    out->bid_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_BID_PX);
    out->bid_qty = (int64_t)HERMES_SHM__W(HERMES_SLOT_BID_QTY);
    out->ask_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_ASK_PX);
    out->ask_qty = (int64_t)HERMES_SHM__W(HERMES_SLOT_ASK_QTY);
    for (d = 0; d < HERMES_SHM_DEPTH; d++) {
        out->bids[d][0] = (int64_t)HERMES_SHM__W(HERMES_SLOT_BIDS + 2u * d);
        out->bids[d][1] = (int64_t)HERMES_SHM__W(HERMES_SLOT_BIDS + 2u * d + 1u);
        out->asks[d][0] = (int64_t)HERMES_SHM__W(HERMES_SLOT_ASKS + 2u * d);
        out->asks[d][1] = (int64_t)HERMES_SHM__W(HERMES_SLOT_ASKS + 2u * d + 1u);
    }
    out->last_trade_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_LAST_TRADE_PX);
    out->last_trade_qty = (int64_t)HERMES_SHM__W(HERMES_SLOT_LAST_TRADE_QTY);
    out->last_trade_ts_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_LAST_TRADE_TS_NS);
    out->last_trade_side = HERMES_SHM__W(HERMES_SLOT_LAST_TRADE_SIDE);
    out->trades = HERMES_SHM__W(HERMES_SLOT_TRADES);
    out->mark_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_MARK_PX);
    out->index_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_INDEX_PX);
    out->funding_rate = (int64_t)HERMES_SHM__W(HERMES_SLOT_FUNDING_RATE);
    out->next_funding_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_NEXT_FUNDING_NS);
    out->derivs_ts_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_DERIVS_TS_NS);
    out->liquidations = HERMES_SHM__W(HERMES_SLOT_LIQUIDATIONS);
    {
        uint64_t bits = HERMES_SHM__W(HERMES_SLOT_VOLATILITY_BPS);
        uint64_t kp = HERMES_SHM__W(HERMES_SLOT_KERNEL_PRICE_DECIMALS);
        uint64_t levels = HERMES_SHM__W(HERMES_SLOT_KERNEL_LEVELS);
        out->kernel_flags = HERMES_SHM__W(HERMES_SLOT_KERNEL_FLAGS);
        out->kernel_ts_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_KERNEL_TS_NS);
        out->spread_ticks = (int64_t)HERMES_SHM__W(HERMES_SLOT_SPREAD_TICKS);
        out->spread_bps_x100 = (int64_t)HERMES_SHM__W(HERMES_SLOT_SPREAD_BPS_X100);
        out->mid_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_MID_PX);
        out->microprice_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_MICROPRICE_PX);
        out->bid_depth = (int64_t)HERMES_SHM__W(HERMES_SLOT_BID_DEPTH);
        out->ask_depth = (int64_t)HERMES_SHM__W(HERMES_SLOT_ASK_DEPTH);
        out->imbalance_ppm = (int64_t)HERMES_SHM__W(HERMES_SLOT_IMBALANCE_PPM);
        out->vwap_buy_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_VWAP_BUY_PX);
        out->vwap_sell_px = (int64_t)HERMES_SHM__W(HERMES_SLOT_VWAP_SELL_PX);
        memcpy(&out->volatility_bps, &bits, sizeof bits);
        out->trade_buy_qty = (int64_t)HERMES_SHM__W(HERMES_SLOT_TRADE_BUY_QTY);
        out->trade_sell_qty = (int64_t)HERMES_SHM__W(HERMES_SLOT_TRADE_SELL_QTY);
        out->trade_imbalance_ppm = (int64_t)HERMES_SHM__W(HERMES_SLOT_TRADE_IMBALANCE_PPM);
        out->ofi_window = (int64_t)HERMES_SHM__W(HERMES_SLOT_OFI_WINDOW);
        out->ofi_total = (int64_t)HERMES_SHM__W(HERMES_SLOT_OFI_TOTAL);
        out->updates_per_s_x100 = HERMES_SHM__W(HERMES_SLOT_UPDATES_PER_S_X100);
        out->kernel_price_decimals = kp > 255u ? 255u : (uint32_t)kp;
        out->kernel_levels = levels > 0xffffffffu ? 0xffffffffu : (uint32_t)levels;
        out->vwap_qty = (int64_t)HERMES_SHM__W(HERMES_SLOT_VWAP_QTY);
        out->vol_half_life_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_VOL_HALF_LIFE_NS);
        out->trade_window_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_TRADE_WINDOW_NS);
        out->rate_window_ns = (int64_t)HERMES_SHM__W(HERMES_SLOT_RATE_WINDOW_NS);
    }
#undef HERMES_SHM__W
}

/** One attempt at a consistent copy of `slot`. Returns HERMES_SHM_OK and fills `out`, or
 *  HERMES_SHM_E_BUSY when the writer was inside the slot or wrote during the copy (`out`
 *  is then untouched), or HERMES_SHM_E_RANGE. */
static inline int hermes_shm_try_read(const struct hermes_shm *shm, uint32_t slot,
                                      struct hermes_tob *out) {
    uint64_t buf[HERMES_SLOT_DATA_WORDS];
    uint64_t s1, s2;
    unsigned i;
    if (!shm || !shm->base || !out) return HERMES_SHM_E_INVAL;
    if (slot >= shm->slot_count) return HERMES_SHM_E_RANGE;
    /* Acquire: pairs with the writer's closing release store of seq (s+2), so every word
     * of that publication (and of earlier ones) is visible to the loads below. */
    s1 = HERMES_SHM_LOAD_U64(hermes_shm__word(shm, slot, HERMES_SLOT_SEQ), HERMES_SHM_ACQUIRE);
    if (s1 & 1u) return HERMES_SHM_E_BUSY; /* the writer is inside the slot */
    for (i = 0; i < HERMES_SLOT_DATA_WORDS; i++) {
        /* Relaxed: may see words of a later publication racing with us; the fence and the
         * second seq load below detect that and the copy is thrown away. Atomic loads keep
         * the race defined (no data race, no torn words). */
        buf[i] = HERMES_SHM_LOAD_U64(hermes_shm__word(shm, slot, 1u + i), HERMES_SHM_RELAXED);
    }
    /* Acquire fence: keeps the word loads above before the seq load below. Pairs with the
     * writer's release fence after its odd store: if any word load saw a store of a newer
     * publication, the odd store (made before that fence) is visible to the load below,
     * so s2 != s1. */
    HERMES_SHM_FENCE_ACQUIRE();
    /* Relaxed: ordered by the fence above. */
    s2 = HERMES_SHM_LOAD_U64(hermes_shm__word(shm, slot, HERMES_SLOT_SEQ), HERMES_SHM_RELAXED);
    if (s1 != s2) return HERMES_SHM_E_BUSY;
    hermes_shm__decode(s1, buf, out);
    return HERMES_SHM_OK;
}

/** Retry budget of hermes_shm_read: about a second of yields on a loaded machine. */
#ifndef HERMES_SHM_READ_MAX_ATTEMPTS
#define HERMES_SHM_READ_MAX_ATTEMPTS (1u << 20)
#endif

/** A consistent copy of `slot`, retrying while the writer is inside it (spinning briefly,
 *  then yielding the CPU so a preempted writer can finish). A publication takes well
 *  under a microsecond, so the retry budget is only exhausted when the writer died inside
 *  the slot; then HERMES_SHM_E_BUSY is returned instead of spinning forever. */
static inline int hermes_shm_read(const struct hermes_shm *shm, uint32_t slot, struct hermes_tob *out) {
    uint32_t attempt;
    for (attempt = 0; attempt < HERMES_SHM_READ_MAX_ATTEMPTS; attempt++) {
        int rc = hermes_shm_try_read(shm, slot, out);
        if (rc != HERMES_SHM_E_BUSY) return rc;
        if (attempt >= 64) {
            /* The writer was likely preempted mid-slot: let it run. */
            sched_yield();
        }
    }
    return HERMES_SHM_E_BUSY;
}

/* ---------------------------------------------------------------------------------------
 * Writer liveness
 * ------------------------------------------------------------------------------------- */

/** Unix time in nanoseconds. */
static inline int64_t hermes_shm_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

/** The writer's pid (written once before the file was published). */
static inline uint32_t hermes_shm_writer_pid(const struct hermes_shm *shm) {
    return hermes_shm__u32(shm->base + HERMES_SHM_HDR_WRITER_PID);
}

/** This file's writer generation (written once before the file was published). */
static inline uint64_t hermes_shm_generation(const struct hermes_shm *shm) {
    return hermes_shm__u64(shm->base + HERMES_SHM_HDR_GENERATION);
}

/** Nanoseconds since the writer's last heartbeat (0 if the clock went backwards). */
static inline int64_t hermes_shm_heartbeat_age_ns(const struct hermes_shm *shm) {
    /* Relaxed: the heartbeat is a standalone timestamp the writer stores relaxed; nothing
     * else is read on the strength of it. */
    int64_t hb = (int64_t)HERMES_SHM_LOAD_U64(shm->base + HERMES_SHM_HDR_HEARTBEAT_NS, HERMES_SHM_RELAXED);
    int64_t age = hermes_shm_now_ns() - hb;
    return age > 0 ? age : 0;
}

/** Nonzero when the writer closed the region cleanly. After a nonzero return, reads show
 *  the writer's last publications. */
static inline int hermes_shm_writer_closed(const struct hermes_shm *shm) {
    /* Acquire: pairs with the writer's release fetch_or of the flag on exit, so slot reads
     * after this see everything it published before closing. */
    uint32_t f = HERMES_SHM_LOAD_U32(shm->base + HERMES_SHM_HDR_FLAGS, HERMES_SHM_ACQUIRE);
    return (f & HERMES_SHM_HDR_FLAG_CLOSED) != 0;
}

/** Nonzero when a process with the writer's pid exists (it may be a reused pid; the
 *  heartbeat tells). */
static inline int hermes_shm_writer_pid_alive(const struct hermes_shm *shm) {
    pid_t pid = (pid_t)hermes_shm_writer_pid(shm);
    if (pid <= 0) return 0; /* kill(0 or -1, 0) would probe a group, not a process */
    return kill(pid, 0) == 0 || errno == EPERM;
}

/** Nonzero when the file at the path is no longer the mapped one (a new writer renamed a
 *  new file into place, or it was removed). */
static inline int hermes_shm_replaced(const struct hermes_shm *shm) {
    struct stat st;
    if (!shm->path || stat(shm->path, &st) != 0) return 0; /* as the Rust reader: unknown */
    return st.st_ino != shm->ino || st.st_dev != shm->dev;
}

/** The writer's state, checked in the order of the Rust reader: replaced, closed, dead,
 *  stalled (heartbeat older than `max_age_ns`), alive. LAYOUT.md suggests a few hundred ms
 *  for `max_age_ns` (the writer beats at least every 100 ms). */
static inline enum hermes_writer_state hermes_shm_writer_status(const struct hermes_shm *shm,
                                                                int64_t max_age_ns) {
    if (hermes_shm_replaced(shm)) return HERMES_WRITER_REPLACED;
    if (hermes_shm_writer_closed(shm)) return HERMES_WRITER_CLOSED;
    if (!hermes_shm_writer_pid_alive(shm)) return HERMES_WRITER_DEAD;
    if (hermes_shm_heartbeat_age_ns(shm) > max_age_ns) return HERMES_WRITER_STALLED;
    return HERMES_WRITER_ALIVE;
}

/** `alive`, `closed`, `dead`, `stalled` or `replaced`. */
static inline const char *hermes_writer_state_name(enum hermes_writer_state s) {
    switch (s) {
    case HERMES_WRITER_ALIVE: return "alive";
    case HERMES_WRITER_CLOSED: return "closed";
    case HERMES_WRITER_DEAD: return "dead";
    case HERMES_WRITER_STALLED: return "stalled";
    case HERMES_WRITER_REPLACED: return "replaced";
    default: return "unknown";
    }
}

/* ---------------------------------------------------------------------------------------
 * Decimal text
 * ------------------------------------------------------------------------------------- */

/** Bytes hermes_format_decimal needs at most: sign, 255 decimals, a leading 0, point, NUL. */
#define HERMES_DECIMAL_BUF 260

/** Writes the canonical decimal text of `mantissa × 10^-decimals` into `buf` (at least
 *  HERMES_DECIMAL_BUF bytes): no exponent, no trailing zeros after the point, no trailing
 *  '.', zero is "0", '-' for negatives. `6183763000000, 8` gives "61837.63". Returns `buf`. */
static inline char *hermes_format_decimal(int64_t mantissa, uint8_t decimals, char *buf) {
    char digits[HERMES_DECIMAL_BUF]; /* little-endian digits */
    /* |INT64_MIN| without overflow. */
    uint64_t abs = mantissa < 0 ? (uint64_t)0 - (uint64_t)mantissa : (uint64_t)mantissa;
    unsigned n = 0, skip = 0, i, len = 0;
    do {
        digits[n++] = (char)('0' + (int)(abs % 10u));
        abs /= 10u;
    } while (abs != 0);
    while (n <= decimals) digits[n++] = '0'; /* at least one integer digit */
    while (skip < decimals && digits[skip] == '0') skip++;
    if (mantissa < 0) buf[len++] = '-';
    for (i = n; i > decimals; i--) buf[len++] = digits[i - 1];
    if (skip < decimals) {
        buf[len++] = '.';
        for (i = decimals; i > skip; i--) buf[len++] = digits[i - 1];
    }
    buf[len] = '\0';
    return buf;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HERMES_SHM_H */
