//! An NDJSON file cut into blocks of whole lines, so that several workers can read the
//! resources of one file at once while line numbers stay exact.

use std::io::Read;
use std::path::Path;

/// Bytes a block holds (a line longer than this makes its block longer).
pub const BLOCK_BYTES: usize = 1 << 22;

/// Whole lines of one input file.
#[derive(Debug)]
pub struct Block {
    /// The file's index in the input's file order.
    pub file: usize,
    /// The number (1-based) of the block's first line in its file.
    pub first_line: u64,
    /// The lines, each ending in a newline except perhaps the file's last.
    pub bytes: Vec<u8>,
}

/// Reads the NDJSON file `path` (decompressing `.gz`) as blocks of about `block_bytes`,
/// giving each to `send` in file order; stops at the first error `send` returns.
pub fn read_blocks(
    path: &Path,
    file: usize,
    block_bytes: usize,
    mut send: impl FnMut(Block) -> Result<(), String>,
) -> Result<(), String> {
    let name = super::input::file_name(path);
    let mut reader = super::input::open_reader(path)?;
    let mut next_line = 1u64;
    let mut carried: Vec<u8> = Vec::new();
    loop {
        let mut bytes = std::mem::take(&mut carried);
        let filled = bytes.len();
        // A line carried over from the last block may be longer than a block: grow for it.
        let target = if filled < block_bytes {
            block_bytes
        } else {
            filled * 2
        };
        bytes.resize(target, 0);
        let mut end = filled;
        let mut at_end = false;
        while end < bytes.len() {
            let read = reader
                .read(&mut bytes[end..])
                .map_err(|e| format!("cannot read {name}: {e}"))?;
            if read == 0 {
                at_end = true;
                break;
            }
            end += read;
        }
        bytes.truncate(end);
        if at_end {
            if !bytes.is_empty() {
                send(Block {
                    file,
                    first_line: next_line,
                    bytes,
                })?;
            }
            return Ok(());
        }
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(last_newline) => {
                carried = bytes.split_off(last_newline + 1);
                let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                let first_line = next_line;
                next_line += lines;
                send(Block {
                    file,
                    first_line,
                    bytes,
                })?;
            }
            // One line longer than the block: read on until it ends.
            None => carried = bytes,
        }
    }
}

impl Block {
    /// The block's lines with their numbers, without their line ends.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let mut bytes = self.bytes.as_slice();
        if bytes.last() == Some(&b'\n') {
            bytes = &bytes[..bytes.len() - 1];
        }
        bytes
            .split(|&b| b == b'\n')
            .zip(self.first_line..)
            .map(|(line, number)| (number, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn blocks_of(text: &str, block_bytes: usize, gzip: bool) -> Vec<Block> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join(if gzip { "x.ndjson.gz" } else { "x.ndjson" });
        let mut file = std::fs::File::create(&path).unwrap();
        if gzip {
            let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            encoder.write_all(text.as_bytes()).unwrap();
            encoder.finish().unwrap();
        } else {
            file.write_all(text.as_bytes()).unwrap();
        }
        let mut blocks = Vec::new();
        read_blocks(&path, 3, block_bytes, |b| {
            blocks.push(b);
            Ok(())
        })
        .unwrap();
        blocks
    }

    #[test]
    fn blocks_hold_whole_lines_and_number_them_as_the_file_does() {
        let text = "aaaa\nbb\n\ncccccccccccccccc\nd\ne";
        for gzip in [false, true] {
            for block_bytes in [1, 3, 6, 7, 64] {
                let blocks = blocks_of(text, block_bytes, gzip);
                let joined: Vec<u8> = blocks.iter().flat_map(|b| b.bytes.clone()).collect();
                assert_eq!(joined, text.as_bytes(), "block size {block_bytes}");
                let lines: Vec<(u64, String)> = blocks
                    .iter()
                    .flat_map(|b| {
                        b.lines()
                            .map(|(n, l)| (n, String::from_utf8(l.to_vec()).unwrap()))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let expected: Vec<(u64, String)> = text
                    .split('\n')
                    .zip(1..)
                    .map(|(l, n)| (n, l.to_owned()))
                    .collect();
                assert_eq!(lines, expected, "block size {block_bytes}, gzip {gzip}");
                assert!(blocks.iter().all(|b| b.file == 3));
            }
        }
    }

    #[test]
    fn an_empty_file_has_no_blocks() {
        assert!(blocks_of("", 8, false).is_empty());
    }
}
