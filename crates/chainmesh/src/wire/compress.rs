//! Payload compression: zstd level 1, as FISCO BCOS 3.x uses, applied only when it shrinks the
//! payload, and decompression that never produces more than the limit it is given, checked
//! while it runs.
//!
//! Compression contexts are kept per thread: creating a zstd context costs far more than
//! compressing a few kilobytes with one, and a thread-local needs no lock.

use std::cell::RefCell;
use std::io::Cursor;

use bytes::Bytes;

use super::error::WireError;

/// zstd level used on the wire: the fastest, as FISCO BCOS 3.x.
pub const COMPRESSION_LEVEL: i32 = 1;

/// Default `p2p.compress_threshold`: payloads strictly larger than this are compressed.
pub const DEFAULT_COMPRESS_THRESHOLD: usize = 1024;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        RefCell::new(zstd::bulk::Compressor::new(COMPRESSION_LEVEL).ok());
    static DECOMPRESSOR: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        RefCell::new(zstd::zstd_safe::DCtx::try_create());
}

/// Appends `src` compressed to `out` if the result is strictly smaller than `src`, and
/// returns whether it did. On `false`, `out` is as it was.
///
/// The compressed bytes go straight into `out`'s spare room, which is first limited to
/// `src.len() - 1` bytes: zstd then gives up by itself as soon as the output would not be
/// smaller, so an incompressible payload costs no extra buffer.
pub fn compress_append(out: &mut Vec<u8>, src: &[u8]) -> bool {
    if src.len() < 2 || looks_incompressible(src) {
        return false;
    }
    let start = out.len();
    let room = src.len() - 1;
    // `Vec` may hand out more capacity than asked for; the length check below is what
    // guarantees the result shrinks.
    out.reserve_exact(room);
    let written = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let compressor = c.as_mut()?;
        let mut cursor = Cursor::new(&mut *out);
        cursor.set_position(start as u64);
        compressor.compress_to_buffer(src, &mut cursor).ok()
    });
    match written {
        Some(n) if n < src.len() && out.len() == start + n => true,
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// Bytes sampled by [`looks_incompressible`].
const SAMPLE: usize = 512;

/// A quick test, about a nanosecond per sampled byte, that `src` looks like uniformly random
/// bytes (ciphertext, hashes, signatures, already-compressed data), which zstd would spend
/// microseconds on only to find it does not shrink.
///
/// It samples up to [`SAMPLE`] bytes spread over the payload and measures how often two
/// sampled bytes are equal (the sum of squared byte counts). Uniform bytes collide with
/// probability 1/256; text, hex, base64, varint-heavy encodings and zero padding collide at
/// least 4 times as often. Below twice the uniform rate the payload is sent as it is. A
/// payload of random-looking bytes that repeats itself (the same hash many times) is missed
/// and goes uncompressed: a cost in bytes, never in correctness.
fn looks_incompressible(src: &[u8]) -> bool {
    let step = (src.len() / SAMPLE).max(1);
    let mut counts = [0u32; 256];
    let mut n = 0u64;
    for &b in src.iter().step_by(step).take(SAMPLE) {
        counts[b as usize] += 1;
        n += 1;
    }
    if n < 64 {
        return false;
    }
    let pairs: u64 = counts.iter().map(|&c| u64::from(c) * u64::from(c)).sum();
    // Equal pairs among the n(n-1)/2 distinct pairs, scaled: uniform gives ~1/256.
    let equal = (pairs - n) / 2;
    let total = n * (n - 1) / 2;
    equal * 256 < 2 * total
}

/// Largest window a received frame may ask the decoder to keep: 8 MiB, what zstd's levels
/// up to 19 use (level 1, ours and FISCO BCOS's, uses at most 512 KiB). A frame asking for
/// more is refused rather than making the decoder allocate up to zstd's default of 128 MiB.
pub const MAX_WINDOW_LOG: u32 = 23;

/// Output room added at a time: the output grows with what the frame actually produces.
const OUT_STEP: usize = 64 * 1024;

/// The size a COMPRESSED payload's zstd frame header records, if it records one; an error
/// if the payload does not start with a zstd frame. Only a claim: [`decompress`] never
/// trusts it.
pub fn declared_size(src: &[u8]) -> Result<Option<u64>, WireError> {
    zstd::zstd_safe::get_frame_content_size(src).map_err(|_| WireError::Decompress {
        reason: "not a zstd frame".into(),
    })
}

/// Decompresses a COMPRESSED payload (one zstd frame), refusing to produce more than
/// `limit` bytes.
///
/// The limit holds while decompressing: the output buffer grows by steps as the frame
/// produces bytes and never past `limit`, whatever the frame header records, and a frame
/// whose window exceeds [`MAX_WINDOW_LOG`] is refused before the decoder allocates it. A
/// recorded size above `limit` is refused before any work. So a small packet can make the
/// node spend at most `limit` bytes of output and one bounded window on it. Bytes after the
/// frame are an error: the format is a single frame.
pub fn decompress(src: &[u8], limit: usize) -> Result<Bytes, WireError> {
    let declared = declared_size(src)?;
    if declared.is_some_and(|size| size > limit as u64) {
        return Err(WireError::DecompressedTooLarge { max: limit });
    }
    let failed = |code: usize| WireError::Decompress {
        reason: zstd::zstd_safe::get_error_name(code).to_owned(),
    };
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let dctx = d.as_mut().ok_or_else(|| WireError::Decompress {
            reason: "no zstd context".into(),
        })?;
        dctx.reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(failed)?;
        dctx.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .map_err(failed)?;
        // One byte of room past the limit tells "exactly the limit" from "more".
        let room = limit.saturating_add(1);
        let first = declared.map_or(OUT_STEP, |s| (s as usize).saturating_add(1).min(OUT_STEP));
        let mut out: Vec<u8> = Vec::with_capacity(first.min(room));
        let mut input = zstd::zstd_safe::InBuffer::around(src);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= room {
                    return Err(WireError::DecompressedTooLarge { max: limit });
                }
                let step = out.len().clamp(OUT_STEP, 4 * 1024 * 1024);
                out.reserve_exact(step.min(room - out.len()));
            }
            let (before_in, before_out) = (input.pos(), out.len());
            let pos = out.len();
            // The output buffer sets `out`'s length to what zstd wrote.
            let left = dctx
                .decompress_stream(
                    &mut zstd::zstd_safe::OutBuffer::around_pos(&mut out, pos),
                    &mut input,
                )
                .map_err(failed)?;
            if out.len() > limit {
                return Err(WireError::DecompressedTooLarge { max: limit });
            }
            if left == 0 {
                break;
            }
            let stuck = input.pos() == before_in && out.len() == before_out;
            if stuck && input.pos() == src.len() {
                return Err(WireError::Decompress {
                    reason: "the frame is truncated".into(),
                });
            }
        }
        if input.pos() != src.len() {
            return Err(WireError::Decompress {
                reason: format!("{} bytes after the frame", src.len() - input.pos()),
            });
        }
        if declared.is_some_and(|size| size != out.len() as u64) {
            return Err(WireError::Decompress {
                reason: format!(
                    "frame records {} bytes but holds {}",
                    declared.unwrap_or_default(),
                    out.len()
                ),
            });
        }
        Ok(Bytes::from(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressible(n: usize) -> Vec<u8> {
        b"chainmesh block 1234 "
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect()
    }

    fn incompressible(n: usize) -> Vec<u8> {
        (0..n).map(|_| rand::random::<u8>()).collect()
    }

    #[test]
    fn compressible_shrinks_and_round_trips() {
        let src = compressible(64 * 1024);
        let mut out = b"head".to_vec();
        assert!(compress_append(&mut out, &src));
        assert_eq!(&out[..4], b"head");
        assert!(out.len() < 4 + src.len() / 10, "{}", out.len());
        let back = decompress(&out[4..], src.len()).unwrap();
        assert_eq!(back.as_ref(), &src[..]);
    }

    #[test]
    fn incompressible_is_left_alone() {
        let src = incompressible(8 * 1024);
        let mut out = b"head".to_vec();
        assert!(!compress_append(&mut out, &src));
        assert_eq!(out, b"head");
        assert!(!compress_append(&mut out, b"x"));
    }

    #[test]
    fn decompression_is_bounded_by_the_limit() {
        // 16 MiB of zeros compress to a few hundred bytes: a would-be zip bomb.
        let bomb = zstd::bulk::compress(&vec![0u8; 16 << 20], 1).unwrap();
        assert!(bomb.len() < 4096);
        assert_eq!(
            decompress(&bomb, 1 << 20),
            Err(WireError::DecompressedTooLarge { max: 1 << 20 })
        );
        assert_eq!(decompress(&bomb, 16 << 20).unwrap().len(), 16 << 20);
    }

    #[test]
    fn streamed_frame_without_recorded_size_is_cut_at_the_limit() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut enc, &vec![7u8; 100_000]).unwrap();
        let framed = enc.finish().unwrap();
        assert!(matches!(
            zstd::zstd_safe::get_frame_content_size(&framed),
            Ok(None)
        ));
        assert_eq!(decompress(&framed, 100_000).unwrap().len(), 100_000);
        assert_eq!(
            decompress(&framed, 99_999),
            Err(WireError::DecompressedTooLarge { max: 99_999 })
        );
    }

    #[test]
    fn random_bytes_are_skipped_and_structured_bytes_are_not() {
        assert!(looks_incompressible(&incompressible(4096)));
        assert!(looks_incompressible(&incompressible(1 << 20)));
        assert!(!looks_incompressible(&compressible(4096)));
        assert!(!looks_incompressible(&[0u8; 4096]));
        let text = "the quick brown fox jumps over the lazy dog ".repeat(100);
        assert!(!looks_incompressible(text.as_bytes()));
        let hexed = hex::encode(incompressible(2048));
        assert!(!looks_incompressible(hexed.as_bytes()));
    }

    #[test]
    fn a_large_frame_stops_at_the_limit_and_a_payload_is_one_frame_only() {
        let big = vec![3u8; 1 << 20];
        let framed = zstd::bulk::compress(&big, 1).unwrap();
        assert_eq!(declared_size(&framed).unwrap(), Some(1 << 20));
        assert_eq!(
            decompress(&framed, 4096),
            Err(WireError::DecompressedTooLarge { max: 4096 })
        );
        // A frame followed by more bytes (a second frame) is not one frame.
        let small = zstd::bulk::compress(&big[..100], 1).unwrap();
        let mut two = small.clone();
        two.extend_from_slice(&small);
        assert!(matches!(
            decompress(&two, 1 << 20),
            Err(WireError::Decompress { .. })
        ));
        assert_eq!(decompress(&small, 100).unwrap().len(), 100);
    }

    #[test]
    fn a_frame_asking_for_a_huge_window_is_refused() {
        let data = compressible(1 << 16);
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.window_log(MAX_WINDOW_LOG + 4).unwrap();
        enc.long_distance_matching(true).unwrap();
        std::io::Write::write_all(&mut enc, &data).unwrap();
        let framed = enc.finish().unwrap();
        assert!(matches!(
            decompress(&framed, 1 << 20),
            Err(WireError::Decompress { .. })
        ));
    }

    #[test]
    fn the_output_is_exactly_the_limit_when_the_frame_is() {
        let data = compressible(300_000);
        let framed = zstd::bulk::compress(&data, 1).unwrap();
        assert_eq!(decompress(&framed, 300_000).unwrap().as_ref(), &data[..]);
        assert_eq!(
            decompress(&framed, 299_999),
            Err(WireError::DecompressedTooLarge { max: 299_999 })
        );
        assert_eq!(
            decompress(&[], 10),
            Err(WireError::Decompress {
                reason: "not a zstd frame".into()
            })
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            decompress(b"definitely not zstd", 1 << 20),
            Err(WireError::Decompress { .. })
        ));
        let mut good = zstd::bulk::compress(&compressible(10_000), 1).unwrap();
        let last = good.len() - 1;
        good[last] ^= 0xff;
        good.truncate(good.len() - 3);
        assert!(decompress(&good, 1 << 20).is_err());
    }
}
