//! A toy framing for the session tests: frames that a peer could not cut apart if they were
//! coalesced, as a channel SDK's.

use std::fmt;

use bytes::{Bytes, BytesMut};
use chainmesh::session::{FrameKind, Framing};
use tokio::io::{AsyncRead, AsyncReadExt};

/// A framing whose peer cannot cut coalesced frames apart, as a channel SDK: each frame is
/// `length u32 | kind u8 | body`, the length counting the whole frame; kind 0 is data, 1 a
/// heartbeat, 2 a goodbye whose body is the reason.
pub struct Toy {
    pub max: u32,
}

const TOY_HEAD: usize = 5;

pub fn toy_frame(kind: u8, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(TOY_HEAD + body.len());
    out.extend_from_slice(&((TOY_HEAD + body.len()) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out.into()
}

pub fn toy_data(tag: u8, len: usize) -> Bytes {
    toy_frame(0, &vec![tag; len])
}

#[derive(Debug)]
pub enum ToyError {
    Length { length: u32, max: u32 },
    Kind { kind: u8, offset: usize },
}

impl fmt::Display for ToyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToyError::Length { length, max } => {
                write!(f, "length {length} outside {TOY_HEAD}..={max}")
            }
            ToyError::Kind { kind, offset } => write!(f, "kind {kind} at offset {offset}"),
        }
    }
}

impl std::error::Error for ToyError {}

impl Framing for Toy {
    type Frame = Bytes;
    type Error = ToyError;

    const COALESCE: bool = false;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ToyError> {
        if buf.len() < TOY_HEAD {
            return Ok(None);
        }
        let length = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if (length as usize) < TOY_HEAD || length > self.max {
            return Err(ToyError::Length {
                length,
                max: self.max,
            });
        }
        if buf[4] > 2 {
            return Err(ToyError::Kind {
                kind: buf[4],
                offset: 4,
            });
        }
        if buf.len() < length as usize {
            return Ok(None);
        }
        Ok(Some(buf.split_to(length as usize).freeze()))
    }

    fn kind(&self, frame: &Bytes) -> FrameKind {
        match frame[4] {
            1 => FrameKind::Heartbeat,
            2 => FrameKind::Goodbye(String::from_utf8_lossy(&frame[TOY_HEAD..]).into_owned()),
            _ => FrameKind::Data,
        }
    }

    fn heartbeat(&self) -> &[u8] {
        &[0, 0, 0, TOY_HEAD as u8, 1]
    }

    fn goodbye(&self, reason: &str) -> Option<Bytes> {
        Some(toy_frame(2, reason.as_bytes()))
    }
}

/// Reads toy frames from the raw end until `n` arrived or end of file.
pub async fn read_toy<R: AsyncRead + Unpin>(peer: &mut R, n: usize) -> Vec<Bytes> {
    let mut dec = Toy { max: 1 << 24 };
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            out.push(f);
        }
        if out.len() >= n || peer.read_buf(&mut buf).await.unwrap() == 0 {
            break;
        }
    }
    out
}
