//! Compact inclusive ranges of part numbers, for "what is still missing".

/// Inclusive ranges `[first, last]` of the numbers in `1..=count` not present in `done`.
pub fn missing_ranges(count: u32, done: impl IntoIterator<Item = u32>) -> Vec<[u32; 2]> {
    let mut seen = vec![false; count as usize + 1];
    for n in done {
        if (1..=count).contains(&n) {
            seen[n as usize] = true;
        }
    }
    let mut out: Vec<[u32; 2]> = Vec::new();
    for n in 1..=count {
        if seen[n as usize] {
            continue;
        }
        match out.last_mut() {
            Some(r) if r[1] + 1 == n => r[1] = n,
            _ => out.push([n, n]),
        }
    }
    out
}

/// Numbers covered by ranges (for clients and tests).
pub fn expand(ranges: &[[u32; 2]]) -> impl Iterator<Item = u32> + '_ {
    ranges.iter().flat_map(|r| r[0]..=r[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts() {
        assert_eq!(missing_ranges(0, []), Vec::<[u32; 2]>::new());
        assert_eq!(missing_ranges(5, []), vec![[1, 5]]);
        assert_eq!(missing_ranges(5, [1, 2, 3, 4, 5]), Vec::<[u32; 2]>::new());
        assert_eq!(missing_ranges(9, [2, 3, 7]), vec![[1, 1], [4, 6], [8, 9]]);
        assert_eq!(missing_ranges(3, [0, 4, 2]), vec![[1, 1], [3, 3]]);
        let r = missing_ranges(10_000, (1..=10_000).filter(|n| n % 2 == 0));
        assert_eq!(r.len(), 5_000);
        assert_eq!(expand(&r).count(), 5_000);
    }
}
