//! The compression yardstick: NDJSON lines packed into independent blocks
//! of at most `block_bytes` (a line never spans two blocks), each block
//! compressed on its own with zstd at `level` — what a simple "append to a
//! log, compress each 1 MiB chunk" store would ship per hit.

use std::io::BufRead;

use serde::Serialize;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BlockStats {
    pub lines: u64,
    pub blocks: u64,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
}

impl BlockStats {
    pub fn bytes_per_line(&self) -> f64 {
        if self.lines == 0 {
            0.0
        } else {
            self.compressed_bytes as f64 / self.lines as f64
        }
    }
}

pub fn compress_lines(
    input: impl BufRead,
    block_bytes: usize,
    level: i32,
) -> std::io::Result<BlockStats> {
    let mut stats = BlockStats::default();
    let mut block = Vec::with_capacity(block_bytes);
    let flush = |block: &mut Vec<u8>, stats: &mut BlockStats| -> std::io::Result<()> {
        if !block.is_empty() {
            stats.compressed_bytes += zstd::bulk::compress(block, level)?.len() as u64;
            stats.blocks += 1;
            block.clear();
        }
        Ok(())
    };
    for line in input.split(b'\n') {
        let mut line = line?;
        if line.is_empty() {
            continue;
        }
        line.push(b'\n');
        if block.len() + line.len() > block_bytes {
            flush(&mut block, &mut stats)?;
        }
        stats.lines += 1;
        stats.raw_bytes += line.len() as u64;
        block.extend_from_slice(&line);
    }
    flush(&mut block, &mut stats)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_never_span_blocks_and_all_are_counted() {
        let line = format!("{{\"b\":\"{}\"}}\n", "x".repeat(100));
        let input = line.repeat(50);
        let stats = compress_lines(input.as_bytes(), 1000, 1).unwrap();
        assert_eq!(stats.lines, 50);
        assert_eq!(stats.raw_bytes, input.len() as u64);
        // 9 lines of 110 bytes fit in 1000.
        assert_eq!(stats.blocks, 50_u64.div_ceil(9));
        assert!(stats.compressed_bytes < stats.raw_bytes);
    }
}
