//! Decompression of COMPRESSED payloads under a limit.

use chainmesh::wire::{compress_append, declared_size, WireError};

/// Limits the first input byte chooses between: none, tiny, around zstd's block and output
/// steps, and the default packet limit.
const LIMITS: [usize; 8] = [0, 1, 100, 4096, 65_535, 65_536, 131_073, 32 << 20];

/// The rest of the input as a zstd frame, under the limit its first byte picks; then the
/// same bytes compressed and decompressed under limits at and just under their length.
///
/// Checks: an output never exceeds its limit; a frame that decompresses gives what the
/// reference zstd decoder gives, and its recorded size if it records one; compressed data
/// comes back exactly, and a limit one byte short refuses it as too large.
pub fn decompress(data: &[u8]) {
    let Some((&pick, src)) = data.split_first() else {
        return;
    };
    let limit = LIMITS[usize::from(pick) % LIMITS.len()];
    if let Ok(out) = chainmesh::wire::decompress(src, limit) {
        assert!(
            out.len() <= limit,
            "{} bytes out with limit {limit}",
            out.len()
        );
        if let Ok(Some(size)) = declared_size(src) {
            assert_eq!(size, out.len() as u64);
        }
        let reference = zstd::bulk::decompress(src, limit).map_err(|_| ());
        assert_eq!(
            reference.as_deref(),
            Ok(out.as_ref()),
            "the reference decoder differs"
        );
    }

    let mut packed = Vec::new();
    if compress_append(&mut packed, src) {
        assert!(packed.len() < src.len());
        let out = chainmesh::wire::decompress(&packed, src.len());
        assert_eq!(out.as_deref(), Ok(src), "compressed data did not come back");
        assert_eq!(
            chainmesh::wire::decompress(&packed, src.len() - 1),
            Err(WireError::DecompressedTooLarge { max: src.len() - 1 })
        );
    }
}
