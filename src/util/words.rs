//! Splitting byte strings, and looking words up: in a table of (word, value) pairs, or in a
//! space-separated list written as one string (`b"ro rw"`).

/// The words of the space-separated `list`, in order.
pub fn words(list: &'static [u8]) -> impl Iterator<Item = &'static [u8]> {
    split(list, b' ')
}

/// The parts of `bytes` between the bytes `sep` (`split` with one separator type for all
/// callers: one instance of its iterator, see qemu/size-lore.md).
pub fn split(bytes: &[u8], sep: u8) -> core::slice::Split<'_, u8, impl FnMut(&u8) -> bool> {
    bytes.split(move |&c| c == sep)
}

/// Where `word` is in the space-separated `list` (0 for the first word), if it is there.
/// One function for every list: the search inlined at each caller costs more
/// (qemu/size-lore.md).
#[inline(never)]
pub fn word_index(list: &'static [u8], word: &[u8]) -> Option<usize> {
    words(list).position(|w| w == word)
}

/// Whether `word` is one of the space-separated `list`.
pub fn is_word_of(list: &'static [u8], word: &[u8]) -> bool {
    word_index(list, word).is_some()
}

/// The value paired with `word` in `table`, a list of (word, value) pairs. (A table rather than
/// a `match` on byte strings, which compiles every arm to its own inline comparison: several
/// times the code, see size-report.md.)
pub fn lookup<T: Copy>(table: &[(&str, T)], word: &[u8]) -> Option<T> {
    let found = table.iter().find(|(name, _)| name.as_bytes() == word);
    found.map(|&(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn words_split_on_single_spaces() {
        let all: Vec<&[u8]> = words(b"ro rw  x").collect();
        assert_eq!(all, [&b"ro"[..], b"rw", b"", b"x"]);
    }

    #[test]
    fn word_index_finds_whole_words() {
        assert_eq!(word_index(b"ro rw sync", b"rw"), Some(1));
        assert_eq!(word_index(b"ro rw sync", b"r"), None);
        assert!(is_word_of(b"ro rw sync", b"sync"));
        assert!(!is_word_of(b"ro rw sync", b"syn"));
    }

    #[test]
    fn lookup_gives_the_paired_value() {
        let table = [("no", 0), ("off", 0), ("yes", 1)];
        assert_eq!(lookup(&table, b"off"), Some(0));
        assert_eq!(lookup(&table, b"yes"), Some(1));
        assert_eq!(lookup(&table, b"ye"), None);
        assert_eq!(lookup(&table, b""), None);
    }
}
