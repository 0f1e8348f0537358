//! Feeding a streaming decoder the same bytes in pieces the input chooses, and checking that
//! the pieces change nothing.

use bytes::BytesMut;

/// A fuzz input for a streaming decoder: a control byte, the piece lengths, then the stream.
///
/// The control byte's low four bits say how many piece-length bytes follow (0 to 15); its
/// high four bits are flags the target gives a meaning to. Piece `i` is `cuts[i] + 1` bytes
/// long, cycling through `cuts`, so every input feeds the whole stream; with no cuts the stream
/// arrives in one piece.
#[derive(Debug, Clone, Copy)]
pub struct Split<'a> {
    /// The control byte's high four bits.
    pub flags: u8,
    /// One byte per piece length.
    pub cuts: &'a [u8],
    /// The bytes the decoder sees.
    pub stream: &'a [u8],
}

impl<'a> Split<'a> {
    /// Reads the control bytes off the front of `data`; what they do not cover is the stream.
    pub fn of(data: &'a [u8]) -> Split<'a> {
        let Some((&control, rest)) = data.split_first() else {
            return Split {
                flags: 0,
                cuts: &[],
                stream: &[],
            };
        };
        let n = usize::from(control & 0x0f).min(rest.len());
        let (cuts, stream) = rest.split_at(n);
        Split {
            flags: control >> 4,
            cuts,
            stream,
        }
    }

    /// The stream in the pieces the cuts choose.
    pub fn pieces(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.stream;
        let mut lengths = self.cuts.iter().map(|&c| usize::from(c) + 1).cycle();
        while !rest.is_empty() {
            let n = lengths.next().unwrap_or(rest.len()).min(rest.len());
            let (piece, after) = rest.split_at(n);
            out.push(piece);
            rest = after;
        }
        out
    }
}

/// What a streaming decoder made of a whole stream.
#[derive(Debug, PartialEq)]
pub struct Decoded<T, E> {
    /// Every item and every error, in order.
    pub items: Vec<Result<T, E>>,
    /// Whether an error that consumed nothing ended the stream: the link closes then.
    pub closed: bool,
    /// Bytes left in the buffer, waiting for the rest of an item; 0 once closed, since what
    /// follows is never read.
    pub left: usize,
}

/// Appends each piece to a receive buffer and calls `next` until it wants more, as a
/// session's read loop does.
///
/// `step` is the most the decoder may reserve beyond what has arrived; the buffer's capacity
/// is checked against it after every call, so an announced length can never grow the buffer
/// by more than the bytes that came.
pub fn decode_pieces<T, E>(
    pieces: &[&[u8]],
    step: usize,
    mut next: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> Decoded<T, E> {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let result = next(&mut buf);
            assert!(
                buf.capacity() <= 2 * (buf.len() + step),
                "{} bytes buffered with {} reserved",
                buf.len(),
                buf.capacity()
            );
            match result {
                Ok(Some(item)) => items.push(Ok(item)),
                Ok(None) => break,
                Err(e) => {
                    items.push(Err(e));
                    if buf.len() == before {
                        return Decoded {
                            items,
                            closed: true,
                            left: 0,
                        };
                    }
                }
            }
        }
    }
    Decoded {
        items,
        closed: false,
        left: buf.len(),
    }
}

/// Decodes `split`'s stream once in its pieces and once whole with decoders from `decoder`,
/// asserts that both give the same items, and returns them.
pub fn split_invariant<D, T, E>(
    split: &Split<'_>,
    step: usize,
    decoder: impl Fn() -> D,
    next: impl Fn(&mut D, &mut BytesMut) -> Result<Option<T>, E>,
) -> Decoded<T, E>
where
    T: PartialEq + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug,
{
    let mut whole_decoder = decoder();
    let whole = decode_pieces(&[split.stream], step, |b| next(&mut whole_decoder, b));
    let mut piece_decoder = decoder();
    let pieces = decode_pieces(&split.pieces(), step, |b| next(&mut piece_decoder, b));
    assert_eq!(whole, pieces, "the stream decodes differently in pieces");
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_stream_in_the_chosen_lengths() {
        let data = [0x12, 0, 2, b'a', b'b', b'c', b'd', b'e', b'f', b'g'];
        let split = Split::of(&data);
        assert_eq!(split.flags, 1);
        assert_eq!(
            split.pieces(),
            vec![&b"a"[..], &b"bcd"[..], &b"e"[..], &b"fg"[..]]
        );
        assert_eq!(Split::of(&[0x0f, 1]).pieces(), Vec::<&[u8]>::new());
        assert_eq!(Split::of(&[]).stream, &[] as &[u8]);
    }
}
