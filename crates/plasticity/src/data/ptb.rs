//! Penn Treebank, word level (Mikolov's preprocessed `ptb.train.txt`, `ptb.valid.txt`,
//! `ptb.test.txt`: one sentence per line, words separated by spaces, rare words already `<unk>`).
//!
//! The vocabulary is built from the training file, in order of first appearance; every line ends
//! with an `<eos>` token (also the last line, and an empty line is a lone `<eos>`). A word of the
//! validation or test file that the training file does not have is an error naming the file and
//! the line.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// The end-of-sentence token appended to every line.
pub const EOS: &str = "<eos>";

/// File names inside the data directory.
pub const FILES: [&str; 3] = ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"];

/// A word list and its index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vocab {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocab {
    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of `word`, if known.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The word with id `id`.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.words.get(id as usize).map(String::as_str)
    }

    fn add(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.index.get(word) {
            return id;
        }
        let id = self.words.len() as u32;
        self.words.push(word.to_string());
        self.index.insert(word.to_string(), id);
        id
    }
}

/// A tokenised corpus: the vocabulary and the three streams of word ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Corpus {
    /// Vocabulary of the training file (with `<eos>`).
    pub vocab: Vocab,
    /// Training stream.
    pub train: Vec<u32>,
    /// Validation stream.
    pub valid: Vec<u32>,
    /// Test stream.
    pub test: Vec<u32>,
}

/// A file that cannot be read or parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct PtbError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (with the line number where there is one).
    pub message: String,
}

impl fmt::Display for PtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for PtbError {}

fn read(path: &Path) -> Result<String, PtbError> {
    let bytes = fs::read(path).map_err(|e| PtbError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    String::from_utf8(bytes).map_err(|e| PtbError {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text ({e})"),
    })
}

/// Tokenises `text`, adding every word to `vocab` (the training file).
pub fn tokenize_train(text: &str, vocab: &mut Vocab) -> Vec<u32> {
    vocab.add(EOS);
    let mut ids = Vec::new();
    for line in text.lines() {
        ids.extend(line.split_whitespace().map(|w| vocab.add(w)));
        ids.push(vocab.add(EOS));
    }
    ids
}

/// Tokenises `text` with a fixed vocabulary; an unknown word is an error naming `path` and the
/// (1-based) line.
pub fn tokenize_with(text: &str, vocab: &Vocab, path: &Path) -> Result<Vec<u32>, PtbError> {
    let eos = vocab.id(EOS).ok_or_else(|| PtbError {
        path: path.to_path_buf(),
        message: "the vocabulary has no <eos>".into(),
    })?;
    let mut ids = Vec::new();
    for (k, line) in text.lines().enumerate() {
        for w in line.split_whitespace() {
            ids.push(vocab.id(w).ok_or_else(|| PtbError {
                path: path.to_path_buf(),
                message: format!(
                    "line {}: word '{w}' is not in the training file's vocabulary",
                    k + 1
                ),
            })?);
        }
        ids.push(eos);
    }
    Ok(ids)
}

/// Reads `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt` from `dir`.
pub fn load(dir: &Path) -> Result<Corpus, PtbError> {
    let [train_path, valid_path, test_path] = FILES.map(|f| dir.join(f));
    let mut vocab = Vocab::default();
    let train = tokenize_train(&read(&train_path)?, &mut vocab);
    if train.iter().all(|&id| id == 0) {
        return Err(PtbError {
            path: train_path,
            message: "no words".into(),
        });
    }
    let valid = tokenize_with(&read(&valid_path)?, &vocab, &valid_path)?;
    let test = tokenize_with(&read(&test_path)?, &vocab, &test_path)?;
    Ok(Corpus {
        vocab,
        train,
        valid,
        test,
    })
}
