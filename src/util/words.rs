//! Space-separated word lists: a short list of byte words written as one string
//! (`b"skip force"`), for the modules that look words up in such a list.

/// The words of the space-separated `list`, in order.
pub fn words(list: &'static [u8]) -> impl Iterator<Item = &'static [u8]> {
    list.split(|&c| c == b' ')
}

/// Index of `word` in the space-separated `list`. Not inlined: one copy of the search serves
/// every word list.
#[inline(never)]
pub fn word_index(list: &[u8], word: &[u8]) -> Option<usize> {
    list.split(|&c| c == b' ').position(|w| w == word)
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
    fn word_index_finds_whole_words_only() {
        assert_eq!(word_index(b"skip force", b"force"), Some(1));
        assert_eq!(word_index(b"skip force", b"skip"), Some(0));
        assert_eq!(word_index(b"skip force", b"for"), None);
        assert_eq!(word_index(b"skip force", b"skip force"), None);
        assert_eq!(word_index(b"a ", b""), Some(1));
    }
}
