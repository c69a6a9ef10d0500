//! Header names and the message formats.
//!
//! | stream | subject | headers | payload |
//! |---|---|---|---|
//! | RAW | `<p>.raw.<host>.<venue>` | `Nats-Msg-Id: <host>:<segment name without .hcap>:<offset>[:<part>]`, `Hermes-Journal` (segment file name), `Hermes-Offset`, `Hermes-Frame` (record number in the segment), `Hermes-Recv-Ns`, `Hermes-Kind` (`ws` or `rest`), `Hermes-Tag` (a REST snapshot's symbol), `Hermes-Conn`, `Hermes-Acked-Through` (`<segment number>:<offset>:<segment name>`: every record before it was acknowledged when this one was sent; the name ties it to one journal), `Hermes-Part: k/n` when a frame is larger than the server's `max_payload` and split | the frame's bytes as received (part k of n) |
//! | MD | `<p>.md.<venue>.<symbol>` | `Nats-Msg-Id: <epoch>:<venue>:<symbol>:<seq>`, `Hermes-Epoch`, `Hermes-Seq` (per symbol and epoch, from 1, +1 per message) | [`hermes_book::wire`] records of one frame's change to the instrument (ending with its commit) or one standalone event |
//! | SNAP | `<p>.snap.<venue>.<symbol>` | `Hermes-Epoch`, `Hermes-Seq` (the last MD message it includes; 0 = none), `Hermes-MD-Stream-Seq` (that message's sequence in the MD stream, when there is one) | [`hermes_book::checkpoint`] of the instrument |

/// `Nats-Msg-Id`.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The publisher's epoch (the lease revision).
pub const EPOCH: &str = "Hermes-Epoch";
/// Per-symbol MD sequence.
pub const SEQ: &str = "Hermes-Seq";
/// The MD stream sequence a SNAP includes.
pub const MD_STREAM_SEQ: &str = "Hermes-MD-Stream-Seq";
/// RAW: the journal segment's file name.
pub const JOURNAL: &str = "Hermes-Journal";
/// RAW: the record's byte offset in the segment.
pub const OFFSET: &str = "Hermes-Offset";
/// RAW: the record's number in the segment (from 0).
pub const FRAME: &str = "Hermes-Frame";
/// RAW: receive time, Unix ns.
pub const RECV_NS: &str = "Hermes-Recv-Ns";
/// RAW: record kind, `ws` (a WebSocket message) or `rest` (a REST depth snapshot).
pub const KIND: &str = "Hermes-Kind";
/// RAW: a REST snapshot's tag (the symbol it was fetched for; its body does not name it).
pub const TAG: &str = "Hermes-Tag";
/// RAW: connection number.
pub const CONN: &str = "Hermes-Conn";
/// RAW: every record before this position (`<segment number>:<offset>:<segment name>`)
/// was acknowledged when this one was sent.
pub const ACKED_THROUGH: &str = "Hermes-Acked-Through";
/// RAW: `k/n` of a split frame.
pub const PART: &str = "Hermes-Part";

/// A header's value parsed as a number.
pub fn num(h: Option<&async_nats::HeaderMap>, name: &str) -> Option<u64> {
    h?.get(name)?.as_str().parse().ok()
}
