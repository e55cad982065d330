//! SHA-256 whose state can be stored between invocations: the whole-file hash of a
//! file scanned in windows is carried from window to window, in order, one invocation
//! per window, so none reads the whole file. `sha2`'s compression function does the
//! work; this module only keeps the chaining state and writes the padding (FIPS 180-4,
//! 5.1.1), and its tests prove the result equals `sha2::Sha256` over the whole input.

#[allow(deprecated)]
use sha2::digest::generic_array::GenericArray;

const BLOCK: usize = 64;
const H0: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// A SHA-256 computation at a block boundary: what a window hands to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    state: [u32; 8],
    /// Bytes hashed so far (a multiple of 64).
    len: u64,
}

impl Default for ChainState {
    fn default() -> Self {
        Self { state: H0, len: 0 }
    }
}

impl ChainState {
    pub fn bytes_hashed(&self) -> u64 {
        self.len
    }

    /// Stored form: 64 hex digits of state, `:`, the byte count.
    pub fn encode(&self) -> String {
        let words: String = self.state.iter().map(|w| format!("{w:08x}")).collect();
        format!("{words}:{}", self.len)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (words, len) = s.split_once(':')?;
        if words.len() != 64 {
            return None;
        }
        let mut state = [0u32; 8];
        for (i, w) in state.iter_mut().enumerate() {
            *w = u32::from_str_radix(words.get(i * 8..i * 8 + 8)?, 16).ok()?;
        }
        let len: u64 = len.parse().ok()?;
        len.is_multiple_of(BLOCK as u64).then_some(Self { state, len })
    }
}

/// Hashes one window, continuing from `from`.
pub struct ChainedSha256 {
    at: ChainState,
    pending: Vec<u8>,
}

impl ChainedSha256 {
    pub fn resume(from: ChainState) -> Self {
        Self { at: from, pending: Vec::with_capacity(BLOCK) }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if !self.pending.is_empty() {
            let take = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK {
                let block = std::mem::take(&mut self.pending);
                self.compress(&block);
            }
        }
        let whole = data.len() / BLOCK * BLOCK;
        if whole > 0 {
            self.compress(&data[..whole]);
        }
        self.pending.extend_from_slice(&data[whole..]);
    }

    // generic-array 0.14 (what sha2 0.10 takes) marks itself deprecated in favour of 1.x.
    #[allow(deprecated)]
    fn compress(&mut self, blocks: &[u8]) {
        let blocks: Vec<GenericArray<u8, _>> = blocks.chunks_exact(BLOCK).map(GenericArray::clone_from_slice).collect();
        sha2::compress256(&mut self.at.state, &blocks);
        self.at.len += (blocks.len() * BLOCK) as u64;
    }

    /// The state to hand on; only at a block boundary (windows are whole MiB).
    pub fn state(&self) -> Option<ChainState> {
        self.pending.is_empty().then_some(self.at)
    }

    /// The digest of everything hashed, across all windows.
    pub fn finalize(mut self) -> [u8; 32] {
        let bits = (self.at.len + self.pending.len() as u64) * 8;
        let mut tail = std::mem::take(&mut self.pending);
        tail.push(0x80);
        while tail.len() % BLOCK != BLOCK - 8 {
            tail.push(0);
        }
        tail.extend_from_slice(&bits.to_be_bytes());
        self.compress(&tail);
        let mut out = [0u8; 32];
        for (i, w) in self.at.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 % 253) as u8).collect()
    }

    /// Hashing in windows of `window` bytes, handing the stored state on each time, in
    /// odd-sized updates, equals one SHA-256 over the whole.
    #[test]
    fn chained_equals_whole() {
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 4096, 4097, 100_000] {
            for window in [64, 128, 4096] {
                let input = data(len);
                let mut state = ChainState::default();
                let mut windows = input.chunks(window).peekable();
                let digest = loop {
                    let chunk = windows.next().unwrap_or(&[]);
                    let mut h = ChainedSha256::resume(ChainState::decode(&state.encode()).unwrap());
                    for piece in chunk.chunks(37) {
                        h.update(piece);
                    }
                    if windows.peek().is_none() {
                        break h.finalize();
                    }
                    state = h.state().expect("window ends on a block boundary");
                };
                assert_eq!(&digest[..], &Sha256::digest(&input)[..], "len {len} window {window}");
            }
        }
    }

    #[test]
    fn stored_state_is_checked() {
        assert!(ChainState::decode("nope").is_none());
        assert!(ChainState::decode(&format!("{}:63", "0".repeat(64))).is_none(), "not a block boundary");
        let s = ChainState::default();
        assert_eq!(ChainState::decode(&s.encode()), Some(s));
    }
}
