//! ImageNet class labels: the model zoo's `synset.txt` (one class per line, line i = class i)
//! embedded in the binary, and a parser for other label files in the same format.

use std::path::Path;

use crate::VisionError;

/// The zoo's 1000 ImageNet synsets, `validated/vision/classification/synset.txt` from
/// github.com/onnx/models (Apache-2.0), unchanged.
const IMAGENET_SYNSETS: &str = include_str!("synset.txt");

/// One class label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// The WordNet ID (`n01440764`) when the line starts with one.
    pub wnid: Option<String>,
    /// The human-readable names (`tench, Tinca tinca`), or the whole line without a WNID.
    pub name: String,
    /// The whole line as written, which is what the zoo notebooks print as the class.
    pub line: String,
}

/// Class labels indexed by class number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    labels: Vec<Label>,
}

impl Labels {
    /// The 1000 ImageNet classes the zoo's ResNets predict.
    pub fn imagenet() -> Self {
        Self::parse(IMAGENET_SYNSETS)
    }

    /// Reads a label file (see [`Labels::parse`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VisionError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| VisionError::Io { path: path.to_owned(), source })?;
        Ok(Self::parse(&text))
    }

    /// One label per line (trailing whitespace and `\r` ignored, a final newline does not
    /// add an empty label). A line `n01440764 tench, Tinca tinca` gives WNID `n01440764` and
    /// name `tench, Tinca tinca`; a line not starting with a WNID (`n` and 8 digits) is all name.
    pub fn parse(text: &str) -> Self {
        let labels = text.lines().map(|line| parse_line(line.trim_end())).collect();
        Self { labels }
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label of class `index`.
    pub fn get(&self, index: usize) -> Option<&Label> {
        self.labels.get(index)
    }

    /// The class index whose whole line is `line` (for label files without WNIDs, such as a
    /// fine-tuned model's `dog`, `bird`, …).
    pub fn index_of_line(&self, line: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.line == line)
    }

    /// The class index whose WNID is `wnid`.
    pub fn index_of_wnid(&self, wnid: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.wnid.as_deref() == Some(wnid))
    }

    /// All labels in class order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }
}

fn parse_line(line: &str) -> Label {
    let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (wnid, name) =
        if is_wnid(first) { (Some(first.to_owned()), rest.trim_start().to_owned()) } else { (None, line.to_owned()) };
    Label { wnid, name, line: line.to_owned() }
}

/// WordNet noun IDs as ImageNet uses them: `n` followed by 8 digits.
fn is_wnid(token: &str) -> bool {
    token.len() == 9 && token.starts_with('n') && token[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_has_1000_labels_from_tench_to_toilet_tissue() {
        let labels = Labels::imagenet();
        assert_eq!(labels.len(), 1000);
        let first = labels.get(0).unwrap();
        assert_eq!(first.wnid.as_deref(), Some("n01440764"));
        assert_eq!(first.name, "tench, Tinca tinca");
        assert_eq!(first.line, "n01440764 tench, Tinca tinca");
        let last = labels.get(999).unwrap();
        assert_eq!(last.wnid.as_deref(), Some("n15075141"));
        assert_eq!(last.name, "toilet tissue, toilet paper, bathroom tissue");
        assert!(labels.get(1000).is_none());
        assert!(labels.iter().all(|l| l.wnid.is_some()));
    }

    #[test]
    fn index_of_wnid_finds_the_line_number() {
        let labels = Labels::imagenet();
        assert_eq!(labels.index_of_wnid("n01443537"), Some(1));
        assert_eq!(labels.index_of_wnid("n15075141"), Some(999));
        assert_eq!(labels.index_of_wnid("n00000000"), None);
    }

    #[test]
    fn lines_without_a_wnid_are_all_name() {
        let labels = Labels::parse("cat\r\nn123 not a wnid\nn01440764\n");
        assert_eq!(labels.len(), 3);
        assert_eq!(labels.get(0).unwrap().name, "cat");
        assert_eq!(labels.get(0).unwrap().wnid, None);
        assert_eq!(labels.get(1).unwrap().name, "n123 not a wnid");
        assert_eq!(labels.get(2).unwrap().wnid.as_deref(), Some("n01440764"));
        assert_eq!(labels.get(2).unwrap().name, "");
    }
}
